"""``mercato events list``, ``mercato events validate TYPE [FILE|-]``, ``mercato events docs``
(the catalog); the log's commands (query, tail, story, export, replay, rebuild) are in
``event_log``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from mercato.cli.common import console, fail
from mercato.contracts.events import REGISTRY, UnknownEventType, spec_of

app = typer.Typer(help="The event catalog and the event log.", no_args_is_help=True)


@app.command("list")
def list_events() -> None:
    """Each event type, its publisher and its schema version."""
    table = Table("type", "publisher", "schema version")
    for spec in REGISTRY.values():
        table.add_row(spec.type, spec.publisher, str(spec.schemaversion))
    console.print(table)


@app.command("validate")
def validate(
    event_type: Annotated[str, typer.Argument(metavar="TYPE")],
    source: Annotated[
        str, typer.Argument(metavar="[FILE|-]", help="JSON payload; - = stdin")
    ] = "-",
) -> None:
    """Validate a JSON payload against TYPE: exit 0 when valid, 1 with the reasons when not."""
    try:
        spec = spec_of(event_type)
    except UnknownEventType as exc:
        fail(str(exc))
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        fail(f"cannot read {source}: {exc.strerror}")
    try:
        document = json.loads(text)
    except ValueError as exc:
        fail(f"not JSON: {exc}", code=1)
    try:
        spec.model.model_validate(document)
    except ValidationError as exc:
        lines = [f"invalid {event_type} payload:"]
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "(payload)"
            lines.append(f"  {field}: {err['msg']}")
        fail("\n".join(lines), code=1)
    console.print(f"valid {event_type} (schema version {spec.schemaversion})")


@app.command("docs")
def docs(
    out: Annotated[Path, typer.Option(help="Where to write the catalogue")] = Path(
        "docs/events.md"
    ),
) -> None:
    """Write the event catalogue (publishers, consumers, schemas, examples) as Markdown."""
    from mercato.cli import event_docs  # loads every service, which the other commands need not

    try:
        out.write_text(event_docs.render())
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")
    console.print(f"wrote {out}")
