"""shipping embedded (in-process bus, SQLite) with identity for tokens: fed the order's events,
driven by the carrier's callbacks and the sandbox carrier."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy import select

from mercato.api.identity.v1 import identity_pb2
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.api.shipping.v1 import shipping_pb2 as pb
from mercato.api.shipping.v1.shipping_pb2_grpc import ShippingStub
from mercato.contracts.events import (
    REGISTRY,
    Address,
    Item,
    OrderCancelled,
    OrderStatusChanged,
    Payload,
)
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.storage.tables import inbox, outbox
from mercato.services.identity.service import service as identity
from mercato.services.shipping import shipments, store
from mercato.services.shipping.service import service as shipping
from tests.conftest import eventually
from tests.support import test_settings as make_settings

ADMIN = ("root@shop.example", "admin-pass-42")
ADDRESS = Address(name="Ada", line1="1 Main St", city="Paris", postalCode="75001", country="FR")


def handed_over(order_id: str, user_id: str = "u-1") -> OrderStatusChanged:
    return OrderStatusChanged(
        orderId=order_id,
        status="RESERVED",
        previousStatus="PAID",
        userId=user_id,
        items=[Item(productId="p-1", quantity=2)],
        shippingAddress=ADDRESS,
    )


@dataclass
class Depot:
    system: System
    stub: Any
    identity: Any
    admin: list[tuple[str, str]]

    @property
    def ctx(self) -> Any:
        return self.system.hosts["shipping"].ctx

    async def tell(self, payload: Payload) -> None:
        envelope = Envelope(
            type=type(payload).__name__, source="mercato/order", data=payload.dump(), subject="o"
        )
        assert await self.system.bus.publish([(topic_of(envelope), envelope)]) == [True]

    async def published(self, kind: str | None = None) -> list[Any]:
        async with self.ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = [Envelope.from_json(r.envelope) for r in rows]
        return [
            REGISTRY[e.type].model.model_validate(e.data)
            for e in found
            if kind is None or e.type == kind
        ]

    async def shipments(self, order_id: str, who: list[tuple[str, str]] | None = None) -> Any:
        request = pb.ListShipmentsRequest(order_id=order_id)
        return list((await self.stub.ListShipments(request, metadata=who or self.admin)).shipments)


async def start_depot(
    data_dir: Path, carrier_delay: str = "never", database_url: str | None = None
) -> AsyncIterator[Depot]:
    settings = make_settings(
        data_dir,
        admin_email=ADMIN[0],
        admin_password=ADMIN[1],
        carrier_delay=carrier_delay,
        database_url=database_url,
    )
    system = System([identity, shipping], settings)
    async with system.running():
        async with (
            grpc.aio.insecure_channel(system.grpc_targets["shipping"]) as channel,
            grpc.aio.insecure_channel(system.grpc_targets["identity"]) as identity_channel,
        ):
            ident = IdentityStub(identity_channel)  # type: ignore[no-untyped-call]
            tokens = await ident.Login(identity_pb2.LoginRequest(email=ADMIN[0], password=ADMIN[1]))
            admin = [("authorization", f"Bearer {tokens.access_token}")]
            yield Depot(system, ShippingStub(channel), ident, admin)  # type: ignore[no-untyped-call]


@pytest.fixture
async def depot(tmp_path: Path) -> AsyncIterator[Depot]:
    async for running in start_depot(tmp_path):
        yield running


async def test_a_hand_over_ships_once_and_the_callback_delivers(depot: Depot) -> None:
    await depot.tell(handed_over("o-1"))
    await depot.tell(handed_over("o-1"))  # the same news again (another event id)
    (created,) = await depot.published("ShipmentCreated")
    assert created.orderId == "o-1" and created.address == ADDRESS
    (shipment,) = await depot.shipments("o-1")
    assert shipment.status == "IN_TRANSIT" and shipment.kind == "delivery"
    assert [(i.product_id, i.quantity) for i in shipment.items] == [("p-1", 2)]
    assert shipment.expected_at == "", "the carrier waits to be told"
    request = pb.MarkDeliveredRequest(shipment_id=created.shipmentId)
    done = await depot.stub.MarkDelivered(request, metadata=depot.admin)
    again = await depot.stub.MarkDelivered(request, metadata=depot.admin)
    assert done.status == again.status == "DELIVERED"
    assert len(await depot.published("ShipmentDelivered")) == 1
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await depot.stub.MarkFailed(
            pb.MarkFailedRequest(shipment_id=created.shipmentId), metadata=depot.admin
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_failed_delivery_comes_back_when_the_order_is_cancelled(depot: Depot) -> None:
    await depot.tell(handed_over("o-1"))
    (created,) = await depot.published("ShipmentCreated")
    failed = await depot.stub.MarkFailed(
        pb.MarkFailedRequest(shipment_id=created.shipmentId, reason="address unknown"),
        metadata=depot.admin,
    )
    assert failed.status == "FAILED" and failed.reason == "address unknown"
    (news,) = await depot.published("ShipmentFailed")
    assert news.reason == "address unknown"
    cancel = OrderCancelled(orderId="o-1", reason="delivery failed", previousStatus="DELIVERING")
    await depot.tell(cancel)
    await depot.tell(cancel)  # re-published: still one return
    (back,) = await depot.published("ReturnShipmentCreated")
    kinds = {s.kind: s for s in await depot.shipments("o-1")}
    assert kinds["return"].return_of == created.shipmentId
    await depot.stub.MarkDelivered(
        pb.MarkDeliveredRequest(shipment_id=back.shipmentId), metadata=depot.admin
    )
    (received,) = await depot.published("ReturnShipmentReceived")
    assert received.orderId == "o-1" and received.items == [Item(productId="p-1", quantity=2)]


async def test_a_cancellation_seen_first_means_nothing_ships(depot: Depot) -> None:
    await depot.tell(OrderCancelled(orderId="o-1", reason="changed my mind", previousStatus="PAID"))
    await depot.tell(handed_over("o-1"))
    assert await depot.published() == []
    assert await depot.shipments("o-1") == []


async def test_a_cancellation_before_pick_up_stops_the_shipment(depot: Depot) -> None:
    await depot.tell(handed_over("o-1"))
    await depot.tell(OrderCancelled(orderId="o-1", reason="c", previousStatus="RESERVED"))
    (shipment,) = await depot.shipments("o-1")
    assert (shipment.kind, shipment.status, shipment.reason) == (
        "delivery",
        "STOPPED",
        "order cancelled",
    )
    assert await depot.published("ReturnShipmentCreated") == []


async def test_only_status_reserved_reaches_shipping(depot: Depot) -> None:
    paid = OrderStatusChanged(orderId="o-1", status="PAID", previousStatus="CREATED")
    await depot.tell(paid)  # no queue of shipping is bound to it: nobody receives it
    async with depot.ctx.db.connect() as conn:
        handled = (await conn.execute(select(inbox.c.event_type))).all()
    assert handled == []
    await depot.tell(handed_over("o-1"))
    async with depot.ctx.db.connect() as conn:
        handled = (await conn.execute(select(inbox.c.event_type))).all()
    assert [h.event_type for h in handled] == ["OrderStatusChanged"]


async def test_only_admins_call_the_carrier_and_owners_see_their_shipments(depot: Depot) -> None:
    ident = depot.identity
    user = await ident.Register(
        identity_pb2.RegisterRequest(email="ada@example.com", password="correct horse 9", name="A")
    )
    tokens = await ident.Login(
        identity_pb2.LoginRequest(email="ada@example.com", password="correct horse 9")
    )
    ada = [("authorization", f"Bearer {tokens.access_token}")]
    await depot.tell(handed_over("o-1", user_id=user.user_id))
    await depot.tell(handed_over("o-2", user_id="someone-else"))
    (mine,) = await depot.shipments("o-1", ada)
    assert await depot.shipments("o-2", ada) == []
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await depot.stub.MarkDelivered(
            pb.MarkDeliveredRequest(shipment_id=mine.shipment_id), metadata=ada
        )
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await depot.stub.MarkDelivered(
            pb.MarkDeliveredRequest(shipment_id="nope"), metadata=depot.admin
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_sandbox_carrier_delivers_after_the_delay(tmp_path: Path) -> None:
    async for depot in start_depot(tmp_path, carrier_delay="0.2"):
        await depot.tell(handed_over("o-1"))
        (shipment,) = await depot.shipments("o-1")
        assert shipment.expected_at > shipment.created_at
        delivered = await eventually(lambda d=depot: d.published("ShipmentDelivered"), timeout=5)
        assert delivered[0].orderId == "o-1"


@pytest.mark.postgres
async def test_ship_fail_and_return_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    async for depot in start_depot(tmp_path, carrier_delay="0.2", database_url=postgres_template):
        await depot.tell(handed_over("o-1"))
        await depot.tell(handed_over("o-2"))
        (first, second) = await depot.published("ShipmentCreated")
        await depot.stub.MarkFailed(
            pb.MarkFailedRequest(shipment_id=first.shipmentId), metadata=depot.admin
        )
        cancel = OrderCancelled(orderId="o-1", reason="failed", previousStatus="DELIVERING")
        await asyncio.gather(depot.tell(cancel), depot.tell(cancel))
        received = await eventually(
            lambda d=depot: d.published("ReturnShipmentReceived"), timeout=10
        )
        assert [r.orderId for r in received] == ["o-1"]
        delivered = await eventually(lambda d=depot: d.published("ShipmentDelivered"), timeout=10)
        assert [d.shipmentId for d in delivered] == [second.shipmentId]


@pytest.fixture
async def pg_depot(tmp_path: Path, postgres_template: str) -> AsyncIterator[Depot]:
    async for running in start_depot(tmp_path, database_url=postgres_template):
        yield running


async def test_a_hand_over_and_a_cancellation_at_once_never_ship_a_cancelled_order(
    pg_depot: Depot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas of shipping on PostgreSQL: one handles the hand-over, the other the
    cancellation of the same order, at the same moment. The hand-over has read "no delivery,
    not cancelled" when the cancellation looks for a shipment to stop: without turns, the
    cancellation finds none and the hand-over then ships a cancelled order."""
    depot = pg_depot
    ctx = depot.ctx
    has_read, go_on = asyncio.Event(), asyncio.Event()
    before_shipping = store.before_shipping

    async def read_then_wait(conn: Any, order_id: str) -> tuple[str | None, bool]:
        found = await before_shipping(conn, order_id)
        has_read.set()
        await go_on.wait()
        return found

    monkeypatch.setattr(store, "before_shipping", read_then_wait)

    async def hand_over() -> None:
        async with ctx.transaction() as uow:
            await shipments.ship(uow, "o-9", "u-1", [Item(productId="p-1", quantity=1)], ADDRESS)

    async def cancel() -> None:
        await has_read.wait()
        async with ctx.transaction() as uow:
            await shipments.take_back(uow, "o-9", "RESERVED")

    both = asyncio.gather(hand_over(), cancel())
    await asyncio.sleep(0.5)  # the cancellation runs now, or waits for its turn
    go_on.set()
    await both
    (delivery,) = await depot.shipments("o-9")
    assert delivery.status == "STOPPED", "a cancelled order's shipment is stopped"
