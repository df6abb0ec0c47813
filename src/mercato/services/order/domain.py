"""The order and its saga as pure rules: no I/O, no clock (the time is always passed in).

The saga is a state machine over *facts* — paid, reserved, shipped, delivered — that the
participants report in whatever order their events arrive. A fact is recorded once; the status
then moves forward as far as the facts allow, one step at a time, so every step is in the
history and has its event. A failure (payment, reservation, delivery), a customer's
cancellation or a step's timeout moves a live order to CANCELLED. Nothing ever moves an order
backwards, and CANCELLED and COMPLETED are final.

Compensation of a late success: once CANCELLED, the participants undo what they did when they
see OrderCancelled. A success that arrives *after* the cancellation (a capture or a reservation
made after the participant had already handled OrderCancelled, or reordered behind it) gets a
new OrderCancelled — same reason, same ``previousStatus`` — so the participant that just
succeeded undoes it too (payment refunds or voids, inventory releases). Participants handle
every OrderCancelled idempotently: each undoes what it still holds for the order.

Settled: an outcome the customer can rely on. A live order is settled once it is paid and
reserved (RESERVED and after); a cancelled one once every participant has said it holds
nothing of it: the payment failed, was cancelled before any charge, or was refunded, and the
stock reservation failed or its stock was released (after a return, if the goods had left).
``Order.pending`` names what is still awaited.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from mercato.contracts.events import (
    Address,
    Item,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderPaid,
    OrderStatusChanged,
    Payload,
    PaymentCancelled,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentMethod,
    PaymentRefunded,
    PricedItem,
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentFailed,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)

MAX_LINES = 100
MAX_QUANTITY = 10_000


class Status(StrEnum):
    CREATED = "CREATED"
    PAID = "PAID"
    RESERVED = "RESERVED"
    DELIVERING = "DELIVERING"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"


class ItemStatus(StrEnum):
    PENDING = "PENDING"
    EXECUTED = "EXECUTED"
    CANCELED = "CANCELED"  # the seeds' spelling for items


PROGRESS = (Status.CREATED, Status.PAID, Status.RESERVED, Status.DELIVERING, Status.COMPLETED)
TERMINAL = frozenset({Status.COMPLETED, Status.CANCELLED})


def rank(status: Status) -> int:
    """Position on the happy path; CANCELLED is beyond every other status."""
    return PROGRESS.index(status) if status in PROGRESS else len(PROGRESS)


class OrderError(Exception):
    pass


class InvalidOrder(OrderError):
    """The order as asked for cannot be placed (no items, a bad quantity or price...)."""


class CannotCancel(OrderError):
    """The order is past the point where it can be cancelled."""


class CannotChange(OrderError):
    """The order is past the point where this can change."""


@dataclass(frozen=True, slots=True)
class Line:
    product_id: str
    quantity: int
    price: Decimal
    status: ItemStatus = ItemStatus.PENDING

    @property
    def amount(self) -> Decimal:
        return self.price * self.quantity


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the status history; the first has no ``from_status``."""

    at: datetime
    from_status: Status | None
    to_status: Status
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    user_id: str
    currency: str
    lines: tuple[Line, ...]
    status: Status
    status_since: datetime
    created_at: datetime
    payment: PaymentMethod | None = None
    shipping_address: Address | None = None
    # What the participants have reported (each recorded once, never unset).
    payment_id: str | None = None
    paid: bool = False
    refunded: bool = False
    reserved: bool = False
    shipment_id: str | None = None
    delivered: bool = False
    cancelled_from: Status | None = None
    cancel_reason: str | None = None
    payment_failed: bool = False
    payment_cancelled: bool = False  # cancelled before it was charged: nothing will be
    reservation_failed: bool = False
    released: bool = False  # inventory holds no stock for the order (any more)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def shipped(self) -> bool:
        return self.shipment_id is not None

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL

    @property
    def pending(self) -> tuple[str, ...]:
        """What the order's outcome still waits for (module docstring): empty when settled."""
        if self.status is not Status.CANCELLED:
            awaited = (("payment", self.paid), ("reservation", self.reserved))
            return tuple(name for name, done in awaited if not done)
        money = "refund" if self.paid else "payment"
        money_done = self.refunded if self.paid else self.payment_failed or self.payment_cancelled
        stock = "reservation"
        stock_done = self.released or self.reservation_failed
        if self.reserved:
            stock = "return" if self.cancelled_from is Status.DELIVERING else "stockRelease"
            stock_done = self.released
        return tuple(name for name, done in ((money, money_done), (stock, stock_done)) if not done)

    @property
    def settled(self) -> bool:
        return not self.pending

    def items(self) -> list[Item]:
        return [Item(productId=line.product_id, quantity=line.quantity) for line in self.lines]


@dataclass(frozen=True, slots=True)
class Reaction:
    """What a message did: the order after it, the history it added, the events to publish."""

    order: Order
    changes: tuple[Change, ...] = ()
    events: tuple[Payload, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True, slots=True)
class CustomerCancel:
    """The customer (or an admin) asks to cancel."""

    reason: str = "cancelled by the customer"


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long each step may take before the order is cancelled (measured from its start)."""

    payment: timedelta = timedelta(minutes=5)
    reservation: timedelta = timedelta(minutes=5)
    shipment: timedelta = timedelta(minutes=5)


SagaMessage = (
    PaymentInitiated
    | PaymentCompleted
    | PaymentFailed
    | PaymentCancelled
    | PaymentRefunded
    | StockReserved
    | StockReservationFailed
    | StockReleased
    | ShipmentCreated
    | ShipmentDelivered
    | ShipmentFailed
    | CustomerCancel
)


# -- placing an order ----------------------------------------------------------------------
def _places(amount: Decimal) -> int:
    """Digits after the decimal point, trailing zeros left out."""
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # a finite amount
    return max(0, -exponent)


def merge_lines(items: Iterable[tuple[str, int, Decimal]]) -> tuple[Line, ...]:
    """One line per product (quantities of repeated products add up), validated."""
    merged: dict[str, Line] = {}
    for product_id, quantity, price in items:
        if not product_id:
            raise InvalidOrder("an item has no productId")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvalidOrder(f"quantity of {product_id} must be 1..{MAX_QUANTITY}")
        if not price.is_finite() or price < 0 or _places(price) > 4:
            raise InvalidOrder(
                f"price of {product_id} must be a number ≥ 0 with at most 4 decimal places"
            )
        seen = merged.get(product_id)
        if seen is not None:
            if seen.price != price:
                raise InvalidOrder(f"{product_id} is listed twice with different prices")
            quantity += seen.quantity
            if quantity > MAX_QUANTITY:
                raise InvalidOrder(f"quantity of {product_id} must be 1..{MAX_QUANTITY}")
        merged[product_id] = Line(product_id, quantity, price)
    if not merged:
        raise InvalidOrder("an order needs at least one item")
    if len(merged) > MAX_LINES:
        raise InvalidOrder(f"an order has at most {MAX_LINES} different products")
    return tuple(merged.values())


def place(
    order_id: str,
    user_id: str,
    items: Iterable[tuple[str, int, Decimal]],
    now: datetime,
    *,
    currency: str = "USD",
    payment: PaymentMethod | None = None,
    shipping_address: Address | None = None,
) -> Reaction:
    """A new order, CREATED; without a payment method it is paid from the user's wallet."""
    if not order_id or not user_id:
        raise InvalidOrder("an order needs an id and a user")
    order = Order(
        order_id=order_id,
        user_id=user_id,
        currency=currency,
        lines=merge_lines(items),
        status=Status.CREATED,
        status_since=now,
        created_at=now,
        payment=payment or PaymentMethod(method="wallet"),
        shipping_address=shipping_address,
    )
    created = OrderCreated(
        orderId=order_id,
        userId=user_id,
        items=[
            PricedItem(productId=x.product_id, quantity=x.quantity, price=x.price)
            for x in order.lines
        ],
        totalAmount=order.total,
        status=Status.CREATED,
        currency=currency,
        payment=order.payment,
        shippingAddress=shipping_address,
    )
    changed = OrderStatusChanged(
        orderId=order_id, status=Status.CREATED, previousStatus=None, userId=user_id
    )
    return Reaction(order, (Change(now, None, Status.CREATED),), (created, changed))


def check_address(address: Address) -> Address:
    """A name and a first line at least (the seeds' clients send one line of text)."""
    for name in ("name", "line1", "line2", "city", "postalCode", "country"):
        value = getattr(address, name) or ""
        if len(value) > 200:
            raise InvalidOrder(f"shippingAddress.{name} must be at most 200 characters")
        if name in ("name", "line1") and not value.strip():
            raise InvalidOrder(f"shippingAddress.{name} is required")
    return address


def readdress(order: Order, address: Address) -> Reaction:
    """A new shipping address, until the order is handed over to delivery."""
    if order.status not in (Status.CREATED, Status.PAID):
        raise CannotChange("the order was handed to delivery; its address can no longer change")
    return Reaction(replace(order, shipping_address=check_address(address)))


# -- the saga ------------------------------------------------------------------------------
def react(order: Order, message: SagaMessage, now: datetime) -> Reaction:
    """The order's answer to one participant's event or to a cancellation request."""
    step = _Step(order, now)
    match message:
        case PaymentInitiated(paymentId=payment_id):
            if step.order.payment_id is None:
                step.record(payment_id=payment_id)
        case PaymentCompleted(paymentId=payment_id):
            if step.order.status is Status.CANCELLED:
                if not step.order.paid and not step.order.refunded:
                    step.compensate(f"payment {payment_id} completed after the cancellation")
                step.record(paid=True, payment_id=step.order.payment_id or payment_id)
            elif not step.order.paid:
                step.record(paid=True, payment_id=payment_id)
        case PaymentFailed(reason=reason):
            step.record(payment_failed=True)
            if not step.order.paid:
                step.cancel(f"payment failed: {reason}")
        case PaymentCancelled():
            step.record(payment_cancelled=True)
        case PaymentRefunded():
            step.record(refunded=True)
        case StockReserved():
            if step.order.status is Status.CANCELLED:
                if not step.order.reserved:
                    step.compensate("stock reserved after the cancellation")
                step.record(reserved=True)
            elif not step.order.reserved:
                step.record(reserved=True)
        case StockReservationFailed(reason=reason):
            step.record(reservation_failed=True)
            if not step.order.reserved:
                step.cancel(f"stock reservation failed: {reason}")
        case StockReleased():
            step.record(released=True)
        case ShipmentCreated(shipmentId=shipment_id):
            if step.order.shipment_id is None:
                step.record(shipment_id=shipment_id)
        case ShipmentDelivered(shipmentId=shipment_id):
            step.record(shipment_id=step.order.shipment_id or shipment_id, delivered=True)
        case ShipmentFailed(shipmentId=shipment_id, reason=reason):
            # A failed delivery means the goods left: the order is DELIVERING first (even if
            # ShipmentCreated is still on its way), so the cancellation says so to everyone.
            step.record(shipment_id=step.order.shipment_id or shipment_id)
            step.advance()
            step.cancel(f"delivery failed: {reason}")
        case CustomerCancel(reason=reason):
            if step.order.status is Status.COMPLETED:
                raise CannotCancel("the order is completed; it can no longer be cancelled")
            step.cancel(reason)
    step.advance()
    return step.result()


def deadline(order: Order, timeouts: Timeouts) -> tuple[datetime, str] | None:
    """When the step the order waits on times out, and what that step is; None if none."""
    if order.status in TERMINAL or order.status is Status.DELIVERING:
        return None
    waits: list[tuple[datetime, str]] = []
    if not order.paid:
        waits.append((order.created_at + timeouts.payment, "the payment"))
    if not order.reserved:
        waits.append((order.created_at + timeouts.reservation, "the stock reservation"))
    if order.status is Status.RESERVED and not order.shipped:
        waits.append((order.status_since + timeouts.shipment, "the shipment"))
    return min(waits) if waits else None


def expire(order: Order, timeouts: Timeouts, now: datetime) -> Reaction:
    """Cancel the order if the step it waits on has timed out; otherwise nothing."""
    due = deadline(order, timeouts)
    step = _Step(order, now)
    if due is not None and due[0] <= now:
        step.cancel(f"timed out waiting for {due[1]}")
    return step.result()


class Until(StrEnum):
    PAID = "PAID"
    RESERVED = "RESERVED"
    COMPLETED = "COMPLETED"
    TERMINAL = "terminal"
    SETTLED = "settled"  # RESERVED or after, or CANCELLED with every compensation done


class Outcome(StrEnum):
    REACHED = "reached"
    UNREACHABLE = "unreachable"  # the order was cancelled first
    PENDING = "pending"


def outcome(order: Order, until: Until) -> Outcome:
    """Whether the order has reached ``until``, never can, or may still."""
    status = order.status
    if until is Until.SETTLED:
        return Outcome.REACHED if order.settled else Outcome.PENDING
    if until is Until.TERMINAL:
        return Outcome.REACHED if status in TERMINAL else Outcome.PENDING
    if status is Status.CANCELLED:
        return Outcome.UNREACHABLE
    return Outcome.REACHED if rank(status) >= rank(Status(until.value)) else Outcome.PENDING


# -- the mechanics -------------------------------------------------------------------------
_NEXT = {
    Status.CREATED: (Status.PAID, "paid"),
    Status.PAID: (Status.RESERVED, "reserved"),
    Status.RESERVED: (Status.DELIVERING, "shipped"),
    Status.DELIVERING: (Status.COMPLETED, "delivered"),
}
_REASONS = {
    Status.PAID: "payment completed",
    Status.RESERVED: "paid and reserved",
    Status.DELIVERING: "handed to delivery",
    Status.COMPLETED: "delivered",
}


class _Step:
    """Collects what one message does to an order: new facts, status changes, events."""

    def __init__(self, order: Order, now: datetime):
        self.order = order
        self.now = now
        self.changes: list[Change] = []
        self.events: list[Payload] = []

    def record(self, **facts: object) -> None:
        self.order = replace(self.order, **facts)  # type: ignore[arg-type]

    def advance(self) -> None:
        while (nxt := _NEXT.get(self.order.status)) and getattr(self.order, nxt[1]):
            self._move(nxt[0], _REASONS[nxt[0]])

    def cancel(self, reason: str) -> None:
        if self.order.status in TERMINAL:
            return
        previous = self.order.status
        self._move(Status.CANCELLED, reason)
        self.order = replace(self.order, cancelled_from=previous, cancel_reason=reason)
        self._cancelled(reason)

    def compensate(self, why: str) -> None:
        """A success after the cancellation: tell the participants again what to undo."""
        self._cancelled(f"{self.order.cancel_reason} ({why})")

    def _cancelled(self, reason: str) -> None:
        o = self.order
        self.events.append(
            OrderCancelled(
                orderId=o.order_id,
                reason=reason,
                previousStatus=o.cancelled_from,
                userId=o.user_id,
            )
        )

    def _move(self, to: Status, reason: str) -> None:
        o = self.order
        item_status = {
            Status.RESERVED: ItemStatus.EXECUTED,
            Status.CANCELLED: ItemStatus.CANCELED,
        }.get(to)
        lines = o.lines
        if item_status is not None:
            lines = tuple(replace(line, status=item_status) for line in o.lines)
        self.order = replace(o, status=to, status_since=self.now, lines=lines)
        self.changes.append(Change(self.now, o.status, to, reason))
        handover = to is Status.RESERVED
        self.events.append(
            OrderStatusChanged(
                orderId=o.order_id,
                status=to,
                previousStatus=o.status,
                reason=reason,
                userId=o.user_id,
                items=self.order.items() if handover else None,
                shippingAddress=o.shipping_address if handover else None,
            )
        )
        if to is Status.PAID:
            assert o.payment_id is not None  # paid is recorded with its payment id
            self.events.append(
                OrderPaid(orderId=o.order_id, paymentId=o.payment_id, amount=o.total)
            )
        elif to is Status.COMPLETED:
            assert o.payment_id is not None
            self.events.append(
                OrderCompleted(
                    orderId=o.order_id,
                    paymentId=o.payment_id,
                    status=to,
                    userId=o.user_id,
                    items=o.items(),
                )
            )

    def result(self) -> Reaction:
        return Reaction(self.order, tuple(self.changes), tuple(self.events))


def history_is_consistent(created_at: datetime, changes: Sequence[Change]) -> bool:
    """The history starts with CREATED, each change starts where the last ended, never goes
    back, never leaves a final status, and times never decrease."""
    if not changes or changes[0].from_status is not None or changes[0].to_status != "CREATED":
        return False
    for before, after in itertools.pairwise(changes):
        if after.from_status != before.to_status or after.at < before.at:
            return False
        if before.to_status in TERMINAL or rank(after.to_status) <= rank(before.to_status):
            return False
    return changes[0].at >= created_at
