"""Whether this process traces, and the switch that turns it on.

Tracing is OpenTelemetry's, configured by the standard ``OTEL_*`` variables and off unless
they ask for it: an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or an exporter (``OTEL_TRACES_EXPORTER``: ``otlp``,
``console``) is named, and ``OTEL_SDK_DISABLED`` is not ``true``. Off, nothing of
OpenTelemetry is imported and the code that would make spans costs one attribute test:
``tracing.otel is None``. On, ``otel`` is the module ``mercato.platform.otel``, which makes the
spans (HTTP, gRPC, transactions, the outbox relay's ``publish`` and the consumers' ``process``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

# ``mercato.platform.otel`` while tracing is on, else None: read it as ``tracing.otel``.
otel: Any = None


def system_of(bus: object) -> str:
    """The ``messaging.system`` of a bus adapter: its module's name (rabbitmq, nats, kafka,
    memory)."""
    return type(bus).__module__.rpartition(".")[2]


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def configure(env: Mapping[str, str] = os.environ, *, exporter: SpanExporter | None = None) -> bool:
    """Turn tracing on if ``env`` asks for it, or with ``exporter`` (tests: an in-memory one,
    spans exported as they end). Returns whether tracing is on. Once on, calling it again
    changes nothing until ``shutdown``."""
    global otel
    if otel is not None:
        return True
    if exporter is None and not wanted(env):
        return False
    from mercato.platform import otel as module

    module.start(env, exporter)
    otel = module
    return True


def flush() -> None:
    """Export the spans that have ended (a test reads them next)."""
    if otel is not None:
        otel.flush()


def shutdown() -> None:
    """Export what is left and turn tracing off."""
    global otel
    module: ModuleType | None = otel
    otel = None
    if module is not None:
        module.stop()
