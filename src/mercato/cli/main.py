"""``mercato``: run the system, inspect events, dead letters and an order's hops."""

from __future__ import annotations

import typer

from mercato.cli import bench, dlq, event_log, events, run, status, trace

app = typer.Typer(
    help="Mercato, an event-driven e-commerce backend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(run.up)
app.command("serve")(run.serve)
app.command("ps")(status.ps)
app.command("bench")(bench.bench)
app.command("trace")(trace.trace)
event_log.register(events.app)
app.add_typer(events.app, name="events")
app.add_typer(dlq.app, name="dlq")
