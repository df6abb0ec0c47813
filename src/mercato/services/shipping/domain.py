"""Shipments and returns as pure rules (no I/O; the time is passed in).

A delivery shipment is made when an order is handed over (its status changes to RESERVED); the
carrier then delivers it or reports a failure. When the order is cancelled, what happens to
the goods depends on where they are:

- the order was DELIVERING (the shipment had left), or the shipment was already delivered or
  failed: a return shipment brings the goods back; when it arrives ("delivered" to the
  warehouse) ReturnShipmentReceived tells inventory to put them back;
- the shipment exists but the order was cancelled before it knew (previousStatus below
  DELIVERING): inventory releases the stock on that news, so the shipment is stopped before
  pick-up and no return is made (the goods never left);
- no shipment yet: the cancellation is remembered, and a hand-over that arrives late (reordered
  behind the cancellation) ships nothing.

Every decision is idempotent: a second cancellation finds the return already made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from mercato.contracts.events import (
    Address,
    Item,
    Payload,
    ReturnShipmentCreated,
    ReturnShipmentReceived,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentFailed,
)


class Kind(StrEnum):
    DELIVERY = "delivery"
    RETURN = "return"


class ShipmentStatus(StrEnum):
    IN_TRANSIT = "IN_TRANSIT"
    DELIVERED = "DELIVERED"  # for a return: back in the warehouse
    FAILED = "FAILED"
    STOPPED = "STOPPED"  # cancelled before pick-up, or recalled on the way (with a return)


class ShippingError(Exception):
    pass


class NotInTransit(ShippingError):
    """The shipment is no longer on its way (delivered, failed or stopped)."""


class ReturnsCannotFail(ShippingError):
    pass


@dataclass(frozen=True, slots=True)
class Shipment:
    shipment_id: str
    order_id: str
    user_id: str | None
    kind: Kind
    status: ShipmentStatus
    items: tuple[Item, ...]
    created_at: datetime
    updated_at: datetime
    address: Address | None = None
    return_of: str | None = None
    reason: str | None = None

    @property
    def in_transit(self) -> bool:
        return self.status is ShipmentStatus.IN_TRANSIT


@dataclass(frozen=True, slots=True)
class Decision:
    """What to keep (shipments new or changed) and what to publish."""

    shipments: tuple[Shipment, ...] = ()
    events: tuple[Payload, ...] = ()


def ship(
    shipment_id: str,
    order_id: str,
    user_id: str | None,
    items: Sequence[Item],
    address: Address | None,
    now: datetime,
    *,
    existing: Shipment | None,
    order_cancelled: bool,
) -> Decision:
    """The order was handed over: one delivery shipment per order, none once cancelled."""
    if existing is not None or order_cancelled:
        return Decision()
    shipment = Shipment(
        shipment_id=shipment_id,
        order_id=order_id,
        user_id=user_id,
        kind=Kind.DELIVERY,
        status=ShipmentStatus.IN_TRANSIT,
        items=tuple(items),
        created_at=now,
        updated_at=now,
        address=address,
    )
    created = ShipmentCreated(shipmentId=shipment_id, orderId=order_id, address=address)
    return Decision((shipment,), (created,))


def deliver(shipment: Shipment, now: datetime) -> Decision:
    """The carrier delivered it (to the customer, or a return to the warehouse)."""
    if shipment.status is ShipmentStatus.DELIVERED:
        return Decision()
    if not shipment.in_transit:
        raise NotInTransit(f"shipment {shipment.shipment_id} is {shipment.status}")
    done = replace(shipment, status=ShipmentStatus.DELIVERED, updated_at=now)
    event: Payload
    if shipment.kind is Kind.RETURN:
        event = ReturnShipmentReceived(
            shipmentId=shipment.shipment_id, orderId=shipment.order_id, items=list(shipment.items)
        )
    else:
        event = ShipmentDelivered(shipmentId=shipment.shipment_id, orderId=shipment.order_id)
    return Decision((done,), (event,))


def fail(shipment: Shipment, reason: str, now: datetime) -> Decision:
    """The carrier could not deliver it."""
    if shipment.kind is Kind.RETURN:
        raise ReturnsCannotFail("a return shipment can only be received at the warehouse")
    if shipment.status is ShipmentStatus.FAILED:
        return Decision()
    if not shipment.in_transit:
        raise NotInTransit(f"shipment {shipment.shipment_id} is {shipment.status}")
    failed = replace(shipment, status=ShipmentStatus.FAILED, reason=reason, updated_at=now)
    event = ShipmentFailed(
        shipmentId=shipment.shipment_id, orderId=shipment.order_id, reason=reason
    )
    return Decision((failed,), (event,))


def order_cancelled(
    delivery: Shipment | None,
    existing_return: Shipment | None,
    previous_status: str | None,
    return_id: str,
    now: datetime,
) -> Decision:
    """The order was cancelled: bring the goods back, stop the shipment, or do nothing."""
    if delivery is None or existing_return is not None:
        return Decision()
    if delivery.status is ShipmentStatus.STOPPED:
        return Decision()
    left = previous_status == "DELIVERING" or delivery.status in (
        ShipmentStatus.DELIVERED,
        ShipmentStatus.FAILED,
    )
    if not left:
        stopped = replace(
            delivery, status=ShipmentStatus.STOPPED, reason="order cancelled", updated_at=now
        )
        return Decision((stopped,))
    back = Shipment(
        shipment_id=return_id,
        order_id=delivery.order_id,
        user_id=delivery.user_id,
        kind=Kind.RETURN,
        status=ShipmentStatus.IN_TRANSIT,
        items=delivery.items,
        created_at=now,
        updated_at=now,
        address=delivery.address,
        return_of=delivery.shipment_id,
    )
    kept: tuple[Shipment, ...] = (back,)
    if delivery.in_transit:  # turned round on the way: it will not reach the customer now
        kept += (
            replace(delivery, status=ShipmentStatus.STOPPED, reason="recalled", updated_at=now),
        )
    return Decision(kept, (ReturnShipmentCreated(shipmentId=return_id, orderId=back.order_id),))
