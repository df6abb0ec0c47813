"""One order, one trace: the embedded system with tracing on (an in-memory exporter), an order
placed through the API and delivered; its spans, from the gateway's request to shipping's
handler, share one trace id, and every hop across the bus has its producer as parent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from mercato.platform import tracing
from tests.e2e.test_saga import card, open_shop

pytestmark = pytest.mark.asyncio(loop_scope="function")


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def trace_of(spans: tuple[ReadableSpan, ...], trace_id: int) -> list[ReadableSpan]:
    return [s for s in spans if s.context is not None and s.context.trace_id == trace_id]


def check_hops(spans: list[ReadableSpan]) -> None:
    """Every span's parent is in the trace, and every ``publish`` and ``process`` span's
    parent is the ``create`` span of the same event (the envelope's traceparent)."""
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    for span in spans:
        if span.parent is None:
            continue
        assert span.parent.span_id in by_id, f"{span.name}: its parent is not in the trace"
        if span.kind in (SpanKind.CONSUMER, SpanKind.PRODUCER) and not span.name.startswith(
            "create"
        ):
            parent = by_id[span.parent.span_id]
            assert parent.name.startswith("create "), (span.name, parent.name)
            assert span.attributes is not None and parent.attributes is not None
            assert (
                span.attributes["messaging.message.id"] == parent.attributes["messaging.message.id"]
            )


async def test_one_order_is_one_trace_from_the_gateway_to_shipping(
    tmp_path: Path, exported: InMemorySpanExporter
) -> None:
    async for shop in open_shop(tmp_path):
        who = await shop.customer()
        cup = await shop.product(price=5, quantity=3)
        exported.clear()
        placed = await shop.place(who, [(cup, 1)], payment=card())
        order_id = placed["orderId"]
        await shop.reaches(who, order_id, "DELIVERING")
        shipment = await shop.shipment(who, order_id, "delivery")
        await shop.carrier(shipment["shipmentId"], "delivered")
        await shop.reaches(who, order_id, "COMPLETED")

    spans = exported.get_finished_spans()
    requests = [s for s in spans if s.name == "POST /api/v1/orders"]
    assert len(requests) == 1, [s.name for s in spans if s.kind == SpanKind.SERVER]
    request = requests[0]
    assert service_of(request) == "gateway" and request.kind == SpanKind.SERVER
    assert request.attributes is not None
    assert request.attributes["http.route"] == "/api/v1/orders"
    assert request.attributes["http.response.status_code"] == 202
    assert request.context is not None
    trace = trace_of(spans, request.context.trace_id)
    services = {service_of(s) for s in trace}
    assert {"gateway", "order", "payment", "inventory", "shipping"} <= services, services
    check_hops(trace)

    names = {(service_of(s), s.name) for s in trace}
    # The gateway called order over (in-process) gRPC; order's transaction wrote OrderCreated.
    assert ("gateway", "/mercato.api.order.v1.Orders/CreateOrder") in names
    assert ("order", "/mercato.api.order.v1.Orders/CreateOrder") in names
    assert ("order", "create OrderCreated") in names
    assert ("order", "publish order.OrderCreated") in names
    for consumer in ("payment", "inventory"):
        assert (consumer, "process OrderCreated") in names
    assert ("shipping", "process OrderStatusChanged") in names
    assert ("order", "process ShipmentCreated") in names
    transactions = [s for s in trace if s.name == "transaction"]
    assert transactions and all(
        s.attributes is not None and int(s.attributes["db.statement.count"]) >= 1
        for s in transactions
    )
    for span in transactions:
        assert span.attributes is not None
        assert not any("param" in key for key in span.attributes), "no parameter values"
    process = next(s for s in trace if s.name == "process OrderCreated")
    assert process.attributes is not None
    assert process.attributes["messaging.system"] == "memory"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.consumer.group.name"] in ("payment", "inventory")
    assert process.attributes["cloudevents.event_type"] == "OrderCreated"
    assert process.attributes["mercato.correlation_id"] == order_id

    # The carrier's callback is a request of its own: its trace goes on from the order.
    delivered = [s for s in spans if s.name == "process ShipmentDelivered"]
    assert delivered and all(service_of(s) == "order" for s in delivered)
