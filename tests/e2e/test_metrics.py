"""The metrics an operator needs, read back from ``/metrics`` of the embedded system after an
order is delivered and another is cancelled: HTTP and gRPC latency, handler latency and
outcomes, each service's outbox, dead letters, queue depth and readiness, the saga's steps
and its cancellations by reason."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_saga import DECLINED_CARD, card, open_shop

pytestmark = pytest.mark.asyncio(loop_scope="function")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_show_the_order_saga_hop_by_hop(tmp_path: Path) -> None:
    async for shop in open_shop(tmp_path):
        who = await shop.customer()
        cup = await shop.product(price=5, quantity=3)
        before = await scrape(shop.http)
        placed = await shop.place(who, [(cup, 1)])
        await shop.reaches(who, placed["orderId"], "DELIVERING")
        shipment = await shop.shipment(who, placed["orderId"], "delivery")
        await shop.carrier(shipment["shipmentId"], "delivered")
        await shop.reaches(who, placed["orderId"], "COMPLETED")
        declined = await shop.place(who, [(cup, 1)], payment=card(DECLINED_CARD))
        await shop.reaches(who, declined["orderId"], "CANCELLED")
        after = await scrape(shop.http)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # HTTP by route template, method and status; gRPC by method and code.
    http = "mercato_http_request_duration_seconds_count"
    assert grew(http, route="/api/v1/orders", method="POST", status="202") == 2
    assert grew(http, route="/api/v1/orders/{orderId}", method="GET", status="200") >= 1
    grpc = "mercato_grpc_server_duration_seconds_count"
    assert grew(grpc, method="/mercato.api.order.v1.Orders/CreateOrder", code="OK") == 2
    # Handlers by consumer and event type, and what came of each event.
    handled = "mercato_handler_duration_seconds_count"
    assert grew(handled, consumer="payment", event_type="OrderCreated") == 2
    assert grew(handled, consumer="shipping", event_type="OrderStatusChanged") >= 1
    outcomes = "mercato_handler_outcomes_total"
    assert grew(outcomes, consumer="inventory", event_type="OrderCreated", outcome="handled") == 2
    # Each service's state, read at the scrape.
    for service in ("order", "payment", "inventory", "shipping", "gateway"):
        assert value(after, "mercato_service_ready", service=service) == 1
    for service in ("order", "payment", "inventory", "shipping"):
        assert ("mercato_outbox_backlog", frozenset({("service", service)})) in after
        assert value(after, "mercato_outbox_oldest_unsent_age_seconds", service=service) >= 0
        assert value(after, "mercato_dead_letters", service=service) == 0
        assert ("mercato_consumer_queue_depth", frozenset({("service", service)})) in after
    # The saga: each step once for the delivered order, the declined one cancelled.
    steps = "mercato_saga_step_seconds_count"
    for step in ("paid", "reserved", "delivering", "completed"):
        assert grew(steps, step=step) == 1, step
    assert grew("mercato_orders_cancelled_total", reason="payment_failed") == 1
