"""One order, one trace, with every service its own ``mercato serve`` process on RabbitMQ and
PostgreSQL, exporting its spans over OTLP/gRPC to a real receiver on loopback (as to an
OpenTelemetry Collector): the gateway's request, the gRPC call across processes, and each
hop across the broker, parent to child, in one trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.platform.settings import Settings
from mercato.services import ordered_names
from tests.e2e import test_saga as saga
from tests.e2e.otlp import Received, Receiver, otlp_receiver
from tests.e2e.processes import serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with otlp_receiver() as opened:
        yield opened


@pytest.fixture
async def shop(
    postgres_template: str,
    rabbitmq_url: str,
    tmp_path: Path,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[saga.Shop]:
    # The processes take their environment from this one's.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    async with (
        serving(
            ordered_names(),
            broker_url=rabbitmq_url,
            postgres_template=postgres_template,
            data_dir=tmp_path,
            admin=saga.ADMIN,
            carrier_delay="never",
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=20) as http,
    ):
        opened = saga.Shop(http, Settings(database_url=postgres_template, data_dir=tmp_path))
        opened.admin = await opened.sign_in(saga.ADMIN["email"], saga.ADMIN["password"])
        try:
            yield opened
        finally:
            for engine in opened.engines.values():
                await engine.dispose()


# Spans of hops across RabbitMQ that one order's trace must have.
HOPS = {
    "publish order.OrderCreated",
    "process OrderCreated",
    "process OrderStatusChanged",
    "process ShipmentCreated",
}


async def test_one_order_is_one_trace_across_processes_and_the_broker(
    shop: saga.Shop, receiver: Receiver, tmp_path: Path
) -> None:
    who = await shop.customer()
    cup = await shop.product(price=5, quantity=3)
    placed = await shop.place(who, [(cup, 1)])
    await shop.reaches(who, placed["orderId"], "DELIVERING")
    request = await _the_request(receiver)

    trace = [s for s in receiver.spans if s.trace_id == request.trace_id]
    by_id = {s.span_id: s for s in trace}
    services = {s.service for s in trace}
    assert {"gateway", "order", "payment", "inventory", "shipping"} <= services, services
    # The gRPC call crosses processes: the gateway's client span, order's server span under it.
    method = "/mercato.api.order.v1.Orders/CreateOrder"
    calls = {(s.service, s.kind): s for s in trace if s.name == method}
    assert set(calls) >= {("gateway", CLIENT), ("order", SERVER)}, sorted(
        (s.service, s.name, s.kind) for s in trace
    )
    client, server = calls["gateway", CLIENT], calls["order", SERVER]
    assert client.service == "gateway" and server.service == "order"
    assert server.parent_id == client.span_id
    # Each hop across RabbitMQ: publish and process under the event's create span.
    hops = hops_of(trace)
    assert {s.name for s in hops} >= HOPS
    for hop in hops:
        parent = by_id[hop.parent_id]
        assert parent.name.startswith("create ")
        assert parent.attributes["messaging.message.id"] == hop.attributes["messaging.message.id"]
        assert hop.attributes["messaging.system"] == "rabbitmq"
    consumers = {s.service for s in hops if s.name == "process OrderCreated"}
    assert consumers >= {"payment", "inventory"}
    # And the JSON log lines written inside those spans carry their ids.
    logged = (tmp_path / "order.log").read_text()
    assert request.trace_id in logged


async def _the_request(receiver: Receiver) -> Received:
    """The gateway's span of POST /api/v1/orders, once exported."""
    from tests.conftest import eventually

    async def found() -> Received | None:
        return next((s for s in receiver.spans if s.name == "POST /api/v1/orders"), None)

    request: Received = await eventually(found, timeout=10)

    async def reached_shipping() -> bool:
        # Shipping's spans, the order's span of its answer and every hop the test looks at
        # (each process exports its own spans every 200 ms, and the consumers nobody waits on
        # fill their batches for up to 0.2 s first: any of them may come last).
        # A hop's parent (the event's create span) is exported by the process that made the
        # event, on its own schedule: every hop's parent is waited for too.
        ours = [s for s in receiver.spans if s.trace_id == request.trace_id]
        ids = {s.span_id for s in ours}
        return (
            any(s.service == "shipping" for s in ours)
            and any(s.service == "order" and s.name == "process ShipmentCreated" for s in ours)
            and {s.name for s in ours} >= HOPS
            and all(s.parent_id in ids for s in hops_of(ours))
        )

    await eventually(reached_shipping, timeout=10)
    return request


def hops_of(spans: list[Received]) -> list[Received]:
    """The publish and process spans (not the events' create spans)."""
    return [s for s in spans if s.kind in (PRODUCER, CONSUMER) and not s.name.startswith("create")]
