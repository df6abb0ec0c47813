"""The docs hold together: every setting is in the one settings table, every link leads on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mercato.cli.main import app
from mercato.contracts.events import REGISTRY
from mercato.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_TABLE = ROOT / "docs" / "operations.md"
DOCS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("deploy/*.md")])
# [text](target) and [text](target "title"), not images' sources inside code spans.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _table_rows(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("|")]


def _settings() -> list[str]:
    return ["MERCATO_CONFIG", *(f"MERCATO_{name.upper()}" for name in Settings.model_fields)]


@pytest.mark.parametrize("name", _settings())
def test_every_setting_the_code_reads_is_in_the_settings_table(name: str) -> None:
    rows = [row for row in _table_rows(SETTINGS_TABLE) if row.startswith("| `MERCATO_")]
    assert any(re.search(rf"`{name}`", row.split("|")[1]) for row in rows), (
        f"{name} is missing from the settings table in {SETTINGS_TABLE.relative_to(ROOT)}"
    )


def test_the_settings_table_is_the_only_one() -> None:
    for doc in DOCS:
        if doc != SETTINGS_TABLE:
            rows = [r for r in _table_rows(doc) if r.startswith("| `MERCATO_")]
            assert not rows, f"{doc.relative_to(ROOT)} has settings rows: link to the table"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_in_the_docs_leads_somewhere(doc: Path) -> None:
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)} links to what does not exist: {broken}"


def test_the_committed_event_catalogue_is_what_mercato_events_docs_writes(tmp_path: Path) -> None:
    written = tmp_path / "events.md"
    result = CliRunner().invoke(app, ["events", "docs", "--out", str(written)])
    assert result.exit_code == 0, result.output
    assert (ROOT / "docs" / "events.md").read_text() == written.read_text(), (
        "docs/events.md is stale: run `mercato events docs`"
    )


def test_the_catalogue_names_every_event_and_each_subscription() -> None:
    text = (ROOT / "docs" / "events.md").read_text()
    assert all(f"\n## {name}\n" in text for name in REGISTRY)
    # Consumers come from the services' declarations: the saga's own subscriptions show.
    row = next(line for line in text.splitlines() if line.startswith("| [OrderCreated]"))
    assert "inventory: `reserve_stock`" in row and "payment: `charge_order`" in row


def test_nothing_cites_a_document_outside_the_repository() -> None:
    """The docs stand alone: no "DESIGN §3" pointing at a design file that is not here."""
    files = [*DOCS, *ROOT.glob("src/mercato/**/*.py"), *ROOT.glob("tests/**/*.py")]
    citing = [
        str(f.relative_to(ROOT))
        for f in files
        if f != Path(__file__) and re.search(r"\bDESIGN\b", f.read_text())
    ]
    assert not citing
