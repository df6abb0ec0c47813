"""The event catalog as the operator sees it: ``mercato events validate`` and ``events list``.

``seed_000_payloads.json`` holds every JSON payload printed in seeds/000_*.txt, copied
verbatim (the seeds folder lives outside the repository).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mercato.cli.main import app
from mercato.contracts.events import REGISTRY

SEEDS = json.loads((Path(__file__).parent / "seed_000_payloads.json").read_text())["payloads"]
ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def validate(event_type: str, payload: Any) -> tuple[int, str]:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    result = runner.invoke(app, ["events", "validate", event_type, "-"], input=text)
    return result.exit_code, " ".join(result.output.split())


def test_the_fixture_holds_the_seed_payloads() -> None:
    assert len(SEEDS) == 15
    assert {s["type"] for s in SEEDS} <= set(REGISTRY)


@pytest.mark.parametrize("seed", SEEDS, ids=[s["type"] for s in SEEDS])
def test_every_seed_payload_validates_as_it_stands(seed: dict[str, Any]) -> None:
    code, output = validate(seed["type"], seed["payload"])
    assert code == 0, output
    assert f"valid {seed['type']}" in output


def _required_fields() -> list[tuple[str, dict[str, Any], str]]:
    cases = []
    for seed in SEEDS:
        model = REGISTRY[seed["type"]].model
        for name, field in model.model_fields.items():
            if field.is_required() and name in seed["payload"]:
                cases.append((seed["type"], seed["payload"], name))
    return cases


REQUIRED = _required_fields()


@pytest.mark.parametrize(
    ("event_type", "payload", "field"), REQUIRED, ids=[f"{t}.{f}" for t, _, f in REQUIRED]
)
def test_a_missing_field_is_refused_by_name(
    event_type: str, payload: dict[str, Any], field: str
) -> None:
    broken = {k: v for k, v in payload.items() if k != field}
    code, output = validate(event_type, broken)
    assert code == 1, output
    assert f"{field}: Field required" in output


def _wrong(value: Any) -> Any:
    """A value of the wrong JSON type for ``value``'s field."""
    if isinstance(value, str):
        return 123
    if isinstance(value, int | float):
        return "a lot"
    return "not a list"


@pytest.mark.parametrize(
    ("event_type", "payload", "field"), REQUIRED, ids=[f"{t}.{f}" for t, _, f in REQUIRED]
)
def test_a_field_of_the_wrong_type_is_refused_by_name(
    event_type: str, payload: dict[str, Any], field: str
) -> None:
    code, output = validate(event_type, {**payload, field: _wrong(payload[field])})
    assert code == 1, output
    assert f"invalid {event_type} payload" in output and f"{field}:" in output


def test_a_nested_field_is_named_with_its_path() -> None:
    order = next(s["payload"] for s in SEEDS if s["type"] == "OrderCreated")
    items = [dict(order["items"][0]), {"productId": "124", "quantity": -1, "price": 5}]
    del items[0]["price"]
    code, output = validate("OrderCreated", {**order, "items": items})
    assert code == 1
    assert "items.0.price: Field required" in output
    assert "items.1.quantity: Input should be greater than or equal to 0" in output


@pytest.mark.parametrize(
    ("args", "stdin", "code", "message"),
    [
        (["OrderCreated", "-"], "{not json", 1, "not JSON"),
        (["OrderCreated", "-"], "[1, 2]", 1, "invalid OrderCreated payload"),
        (["OrderCreatd", "-"], "{}", 2, "unknown event type 'OrderCreatd'"),
        (["OrderCreated", "/no/such/file.json"], "", 2, "cannot read /no/such/file.json"),
    ],
)
def test_bad_input_is_a_clear_error(args: list[str], stdin: str, code: int, message: str) -> None:
    result = runner.invoke(app, ["events", "validate", *args], input=stdin)
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split())


def test_a_file_argument_is_read(tmp_path: Path) -> None:
    seed = SEEDS[0]
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(seed["payload"]))
    result = runner.invoke(app, ["events", "validate", seed["type"], str(path)])
    assert result.exit_code == 0, result.output


def test_events_list_shows_every_type_with_its_publisher_and_schema_version() -> None:
    result = runner.invoke(app, ["events", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {}
    for line in result.output.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").replace("┃", "│").split("│")]
        if len(cells) == 3 and cells[0] in REGISTRY:
            rows[cells[0]] = (cells[1], cells[2])
    assert rows == {t: (s.publisher, str(s.schemaversion)) for t, s in REGISTRY.items()}
    assert rows["OrderCreated"] == ("order", "1") and rows["StockReserved"] == ("inventory", "1")


def test_the_installed_command_exits_0_for_a_seed_and_1_for_a_broken_payload() -> None:
    """The real entry point (``python -m mercato``), exit codes as a shell script sees them."""
    seed = next(s for s in SEEDS if s["type"] == "PaymentInitiated")
    broken = {**seed["payload"], "amount": "lots"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mercato", "events", "validate", "PaymentInitiated", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        for _ in (seed, broken)
    ]
    good, bad = (
        p.communicate(json.dumps(doc), timeout=60)
        for p, doc in zip(procs, (seed["payload"], broken), strict=True)
    )
    assert procs[0].returncode == 0, good
    assert procs[1].returncode == 1, bad
    assert "amount" in bad[1] and "Traceback" not in bad[1]
