"""OpenTelemetry's spans, for a process whose tracing is on (``tracing.configure`` imports this
module then, and only then).

Every service has a tracer provider of its own, so its spans name it (``service.name``) even
when several services share the process; they share one span processor and exporter. The
sampler is the SDK's, from ``OTEL_TRACES_SAMPLER`` (default: parent-based, always on), so
a trace is kept or dropped whole: the gateway's decision travels in every ``traceparent``.

An event's trace context is its creation context (the messaging conventions'): when a
transaction writes an event to the outbox, a ``create`` span (producer) is made under the
current span and its context is the envelope's ``traceparent``, kept with the event for
good. The relay's ``publish`` span and every consumer's ``process`` span are children of
it: a retry, a redelivery, a redrive from the dead letters and a replay carry the same
envelope, so they join the same trace. A batch handled in one transaction has a ``process``
span of its own (linked to every message's context) holding the transaction, and each
message's ``process`` span stays in its message's trace.

A trace the sampler dropped costs little: with a parent-based sampler (the default, and every
``parentbased_*``), a child of an unsampled context would be dropped too, so the ``create``,
``publish``, ``process`` and ``transaction`` spans under one are not made at all; the unsampled
context itself travels on (it is the envelope's ``traceparent``, and it is current while the
event's handlers run), so the trace stays whole and stays dropped.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from mercato.platform.envelope import Envelope

_PROPAGATOR = TraceContextTextMapPropagator()
_SCOPE = "mercato"
_processor: SpanProcessor | None = None
_providers: dict[str, TracerProvider] = {}
_tracers: dict[str, trace.Tracer] = {}
# Whether the sampler drops the children of an unsampled context (set by the first provider).
_parent_based = False


def start(env: Mapping[str, str], exporter: SpanExporter | None) -> None:
    """Spans go to ``exporter`` as each ends (tests), else to the exporter the variables name,
    in batches (``OTEL_BSP_*``)."""
    global _processor
    if exporter is not None:
        _processor = SimpleSpanProcessor(exporter)
    else:
        _processor = BatchSpanProcessor(_exporter(env))


def _exporter(env: Mapping[str, str]) -> SpanExporter:
    kind = env.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    if kind == "console":
        return ConsoleSpanExporter()
    if kind != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r}: Mercato exports 'otlp' or 'console'")
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    ) or "grpc"
    # Both read their endpoint, headers, timeout and compression from the OTEL_* variables.
    if protocol.strip() == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol.strip() == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter()
    raise ValueError(f"OTLP protocol {protocol!r}: Mercato speaks 'grpc' or 'http/protobuf'")


def flush() -> None:
    for provider in _providers.values():
        provider.force_flush()


def stop() -> None:
    global _processor
    flush()
    if _processor is not None:
        _processor.shutdown()
    _processor = None
    _providers.clear()
    _tracers.clear()


def provider(service: str) -> TracerProvider:
    """``service``'s tracer provider (its spans' resource names it)."""
    found = _providers.get(service)
    if found is None:
        resource = Resource.create({"service.name": service, "service.namespace": "mercato"})
        found = _providers[service] = TracerProvider(resource=resource)
        global _parent_based
        _parent_based = isinstance(found.sampler, ParentBased)
        if _processor is not None:
            found.add_span_processor(_processor)
    return found


def tracer(service: str) -> trace.Tracer:
    found = _tracers.get(service)
    if found is None:
        found = _tracers[service] = provider(service).get_tracer(_SCOPE)
    return found


# -- trace context ------------------------------------------------------------------------
def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` names (None if it names none that is valid)."""
    if not traceparent:
        return None
    found = _PROPAGATOR.extract({"traceparent": traceparent})
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def traceparent_of(span: Span) -> str:
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


def current_ids() -> tuple[str, str] | None:
    """The trace and span ids of the span in hand (for log lines), or None."""
    c = trace.get_current_span().get_span_context()
    if not c.is_valid:
        return None
    return f"{c.trace_id:032x}", f"{c.span_id:016x}"


def _dropped(traceparent: str | None) -> bool:
    """Whether a child of this context would be dropped: it names an unsampled trace and the
    sampler is parent-based."""
    return _parent_based and bool(traceparent) and traceparent.endswith("-00")  # type: ignore[union-attr]


def _current_dropped() -> bool:
    c = trace.get_current_span().get_span_context()
    return _parent_based and c.is_valid and not c.trace_flags.sampled


def _messaging(system: str, operation: str, envelope: Envelope, topic: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": system,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.message.id": envelope.id,
        "messaging.destination.name": topic,
        "cloudevents.event_id": envelope.id,
        "cloudevents.event_type": envelope.type,
        "cloudevents.event_source": envelope.source,
    }
    if envelope.subject is not None:
        attributes["cloudevents.event_subject"] = envelope.subject
    if envelope.correlationid is not None:
        attributes["mercato.correlation_id"] = envelope.correlationid
    return attributes


# -- events ---------------------------------------------------------------------------------
def created(service: str, envelope: Envelope, topic: str, cause: Envelope | None) -> str:
    """A ``create`` span for an event being written to the outbox; its traceparent. Under the
    current span (a request's, a handler's), or else under the event's cause. Under an
    unsampled context: no span, that context's traceparent."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid:
        if _parent_based and not current.trace_flags.sampled:
            return f"00-{current.trace_id:032x}-{current.span_id:016x}-00"
    elif cause is not None and _dropped(cause.traceparent):
        return str(cause.traceparent)
    parent = None if current.is_valid or cause is None else context_of(cause.traceparent)
    span = tracer(service).start_span(
        f"create {envelope.type}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=_messaging("mercato", "create", envelope, topic),
    )
    span.end()
    return traceparent_of(span)


def publishing(
    service: str, system: str, batch: Sequence[tuple[str, Envelope]]
) -> list[Span | None]:
    """A ``publish`` span per event the relay hands to the broker, under its creation context
    (None for an event of an unsampled trace)."""
    t = tracer(service)
    return [
        None
        if _dropped(envelope.traceparent)
        else t.start_span(
            f"publish {topic}",
            context=context_of(envelope.traceparent),
            kind=SpanKind.PRODUCER,
            attributes={
                **_messaging(system, "publish", envelope, topic),
                "messaging.batch.message_count": len(batch),
            },
        )
        for topic, envelope in batch
    ]


def published(
    spans: Sequence[Span | None], confirmed: Sequence[bool] | None, error: str = ""
) -> None:
    """End the ``publish`` spans: an error where the broker did not confirm."""
    for i, span in enumerate(spans):
        if span is None:
            continue
        if confirmed is None or i >= len(confirmed) or not confirmed[i]:
            span.set_status(StatusCode.ERROR, error or "the broker did not confirm it")
        span.end()


class Processing:
    """The ``process`` spans of a batch of events a consumer handles in one transaction.

    One event: its span (under the event's creation context) is current for the whole
    transaction. Several: a batch span, linked to every event's context, is current for the
    transaction, and each event's own span is current while its handlers run. An event of an
    unsampled trace has no span; its context is current instead (and the transaction's, if no
    event of the batch is sampled)."""

    def __init__(
        self, consumer: str, system: str, items: Sequence[tuple[Envelope, str, int]]
    ) -> None:
        t = tracer(consumer)
        self.spans: list[Span | None] = []
        self.contexts: list[otel_context.Context] = []  # current while each event is handled
        for envelope, topic, attempt in items:
            if _dropped(envelope.traceparent):
                self.spans.append(None)
                self.contexts.append(context_of(envelope.traceparent) or otel_context.Context())
                continue
            attributes = _messaging(system, "process", envelope, topic)
            attributes["messaging.consumer.group.name"] = consumer
            attributes["mercato.delivery.attempt"] = attempt
            span = t.start_span(
                f"process {envelope.type}",
                context=context_of(envelope.traceparent),
                kind=SpanKind.CONSUMER,
                attributes=attributes,
            )
            self.spans.append(span)
            self.contexts.append(trace.set_span_in_context(span))
        recorded = [s for s in self.spans if s is not None]
        self.batch: Span | None = None
        if len(self.spans) > 1 and recorded:
            self.batch = t.start_span(
                f"process {consumer}",
                context=otel_context.Context(),
                kind=SpanKind.CONSUMER,
                links=[Link(s.get_span_context()) for s in recorded],
                attributes={
                    "messaging.system": system,
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.consumer.group.name": consumer,
                    "messaging.batch.message_count": len(self.spans),
                },
            )
        outer = trace.set_span_in_context(self.batch) if self.batch else self.contexts[0]
        self._token = otel_context.attach(outer)

    @contextmanager
    def item(self, index: int) -> Iterator[None]:
        """Event ``index``'s span (or context) is current (in a batch; alone, it already is)."""
        if len(self.contexts) == 1:
            yield
            return
        token = otel_context.attach(self.contexts[index])
        try:
            yield
        finally:
            otel_context.detach(token)

    def skipped(self, index: int) -> None:
        span = self.spans[index]
        if span is not None:
            span.set_attribute("mercato.duplicate", True)

    def end(self, error: BaseException | None) -> None:
        otel_context.detach(self._token)
        for span in [*self.spans, self.batch]:
            if span is None:
                continue
            if error is not None:
                span.record_exception(error)
                span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}"[:300])
            span.end()


# -- database transactions -------------------------------------------------------------------
class Transaction:
    """A span over one database transaction of a handler or a request: the statements it ran
    (their count, never their parameters), whether it committed."""

    def __init__(self, service: str, system: str) -> None:
        self.span: Span | None = None  # none under an unsampled context
        if _current_dropped():
            return
        self.span = tracer(service).start_span(
            "transaction",
            kind=SpanKind.CLIENT,
            attributes={"db.system.name": system, "db.operation.name": "transaction"},
        )
        self._token = otel_context.attach(trace.set_span_in_context(self.span))

    def end(self, statements: int, error: BaseException | None) -> None:
        if self.span is None:
            return
        otel_context.detach(self._token)
        self.span.set_attribute("db.statement.count", statements)
        self.span.set_attribute("mercato.db.committed", error is None)
        if error is not None:
            self.span.set_status(StatusCode.ERROR, f"{type(error).__name__}"[:300])
        self.span.end()


# -- gRPC ---------------------------------------------------------------------------------------
def server_interceptors(service: str) -> list[Any]:
    """The contrib grpc.aio server interceptor, with ``service``'s spans."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor(tracer_provider=provider(service))]  # type: ignore[no-untyped-call]


def client_interceptors(service: str) -> list[Any]:
    """The contrib grpc.aio client interceptors, with ``service``'s spans."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors(tracer_provider=provider(service)))  # type: ignore[no-untyped-call]


class LocalRpc:
    """The client and server spans of a call between two services of this process (see
    ``local_grpc``: no network, no gRPC interceptors), named as the contrib interceptors name
    theirs (the full method name). ``serving`` is the context the servicer's task runs in,
    under the server span."""

    def __init__(self, caller: str, callee: str, method: str, serving: contextvars.Context):
        service, _, name = method.lstrip("/").rpartition("/")
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        self.client = tracer(caller).start_span(method, kind=SpanKind.CLIENT, attributes=attributes)
        self.server = tracer(callee).start_span(
            method,
            context=trace.set_span_in_context(self.client),
            kind=SpanKind.SERVER,
            attributes={**attributes, "mercato.grpc.in_process": True},
        )
        serving.run(otel_context.attach, trace.set_span_in_context(self.server))

    def end(self, code: Any) -> None:
        """``code``: the call's ``grpc.StatusCode``."""
        for span in (self.server, self.client):
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code.name != "OK":
                span.set_status(StatusCode.ERROR, code.name)
            span.end()
