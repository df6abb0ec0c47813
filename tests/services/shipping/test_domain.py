"""shipping's rules: one delivery per hand-over, the carrier's outcomes, returns on cancel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mercato.contracts.events import (
    Item,
    ReturnShipmentCreated,
    ReturnShipmentReceived,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentFailed,
)
from mercato.services.shipping.domain import (
    Kind,
    NotInTransit,
    ReturnsCannotFail,
    Shipment,
    ShipmentStatus,
    deliver,
    fail,
    order_cancelled,
    ship,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ITEMS = [Item(productId="p-1", quantity=2)]


def shipped() -> Shipment:
    decision = ship("s-1", "o-1", "u-1", ITEMS, None, T0, existing=None, order_cancelled=False)
    (shipment,) = decision.shipments
    (event,) = decision.events
    assert isinstance(event, ShipmentCreated) and event.shipmentId == "s-1"
    assert shipment.status is ShipmentStatus.IN_TRANSIT and shipment.kind is Kind.DELIVERY
    return shipment


def test_one_delivery_per_order_and_none_once_cancelled() -> None:
    first = shipped()
    again = ship("s-2", "o-1", "u-1", ITEMS, None, T0, existing=first, order_cancelled=False)
    assert again.shipments == () and again.events == ()
    late = ship("s-3", "o-1", "u-1", ITEMS, None, T0, existing=None, order_cancelled=True)
    assert late.shipments == () and late.events == ()


def test_the_carrier_delivers_once() -> None:
    decision = deliver(shipped(), T0)
    (done,) = decision.shipments
    assert done.status is ShipmentStatus.DELIVERED
    assert decision.events == (ShipmentDelivered(shipmentId="s-1", orderId="o-1"),)
    assert deliver(done, T0).events == ()


def test_a_failed_delivery_is_final() -> None:
    decision = fail(shipped(), "nobody home", T0)
    (failed,) = decision.shipments
    assert decision.events == (
        ShipmentFailed(shipmentId="s-1", orderId="o-1", reason="nobody home"),
    )
    assert fail(failed, "again", T0).events == ()
    with pytest.raises(NotInTransit):
        deliver(failed, T0)


def test_cancelled_before_the_order_knew_it_shipped_stops_the_shipment() -> None:
    decision = order_cancelled(shipped(), None, "RESERVED", "r-1", T0)
    (stopped,) = decision.shipments
    assert stopped.status is ShipmentStatus.STOPPED and decision.events == ()
    assert order_cancelled(stopped, None, "RESERVED", "r-2", T0).shipments == ()


@pytest.mark.parametrize(
    ("previous", "carrier"),
    [
        ("DELIVERING", None),
        ("DELIVERING", "delivered"),
        ("RESERVED", "failed"),
        ("PAID", "delivered"),
    ],
)
def test_goods_that_left_come_back_with_a_return(previous: str, carrier: str | None) -> None:
    delivery = shipped()
    if carrier == "delivered":
        delivery = deliver(delivery, T0).shipments[0]
    elif carrier == "failed":
        delivery = fail(delivery, "lost", T0).shipments[0]
    decision = order_cancelled(delivery, None, previous, "r-1", T0)
    back = next(s for s in decision.shipments if s.kind is Kind.RETURN)
    assert back.return_of == "s-1" and back.items == tuple(ITEMS) and back.in_transit
    assert decision.events == (ReturnShipmentCreated(shipmentId="r-1", orderId="o-1"),)
    recalled = [s for s in decision.shipments if s.kind is Kind.DELIVERY]
    assert [s.status for s in recalled] == ([ShipmentStatus.STOPPED] if carrier is None else [])
    assert order_cancelled(delivery, back, previous, "r-2", T0).shipments == (), "one return"
    arrived = deliver(back, T0)
    assert arrived.events == (ReturnShipmentReceived(shipmentId="r-1", orderId="o-1", items=ITEMS),)
    with pytest.raises(ReturnsCannotFail):
        fail(back, "lost", T0)


def test_nothing_to_take_back_without_a_shipment() -> None:
    assert order_cancelled(None, None, "PAID", "r-1", T0).shipments == ()
