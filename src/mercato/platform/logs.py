"""Structured logs: JSON when not on a terminal, with event, correlation and trace ids bound;
with tracing on, a line written inside a span carries its ``trace_id`` and ``span_id``.

The standard library's logging (what aio-pika/aiormq, nats-py, asyncpg, grpc's Python side,
uvicorn and asyncio write, and ``warnings``) goes through the same renderer, so a JSON log
stays one JSON object per line, a traceback included (as its ``exception`` field).
"""

from __future__ import annotations

import logging
import sys

import structlog

from mercato.platform import tracing


def _span_ids(
    _logger: object, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """The trace and span ids of the span in hand, when tracing is on and there is one."""
    otel = tracing.otel
    if otel is not None:
        ids = otel.current_ids()
        if ids is not None:
            event["trace_id"], event["span_id"] = ids
    return event


# What both structlog's and the standard library's records go through before rendering.
_SHARED: list[structlog.typing.Processor] = [
    structlog.contextvars.merge_contextvars,
    _span_ids,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes, not to the stream it was at
    configuration: one replaced since (a CLI test's, a capture that has ended) may be closed,
    and a library's record would then print a "Logging error" traceback instead."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _CurrentStderr:
    """What structlog prints to: ``sys.stderr`` as it is at each line (see ``_Stderr``)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    number = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*_SHARED, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = _Stderr()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]  # replaces any earlier call's, and a library's basicConfig
    root.setLevel(number)
    logging.captureWarnings(True)
