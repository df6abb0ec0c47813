"""The order saga's rules, one message at a time (no I/O)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from mercato.contracts.events import (
    Address,
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
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentFailed,
    ShortItem,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from mercato.contracts.events import Item as EventItem
from mercato.services.order.domain import (
    CannotCancel,
    CustomerCancel,
    InvalidOrder,
    ItemStatus,
    Order,
    Outcome,
    SagaMessage,
    Status,
    Timeouts,
    Until,
    deadline,
    expire,
    history_is_consistent,
    outcome,
    place,
    react,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ADDRESS = Address(name="Ada", line1="1 Main St", city="Paris", postalCode="75001", country="FR")
ITEMS = [("p-1", 2, Decimal("10.00")), ("p-2", 1, Decimal("5.50"))]

PAYMENT_STARTED = PaymentInitiated(
    paymentId="pay-1", orderId="o-1", userId="u-1", amount=Decimal("25.50"), status="PENDING"
)
PAID = PaymentCompleted(paymentId="pay-1", orderId="o-1", status="CAPTURED")
PAYMENT_FAILED = PaymentFailed(paymentId="pay-1", orderId="o-1", reason="card declined")
REFUNDED = PaymentRefunded(paymentId="pay-1", orderId="o-1", amount=Decimal("25.50"), reason="x")
RESERVED = StockReserved(orderId="o-1", items=[EventItem(productId="p-1", quantity=2)])
SHORT = StockReservationFailed(
    orderId="o-1",
    reason="out of stock",
    items=[ShortItem(productId="p-1", requested=2, available=1)],
)
SHIPPED = ShipmentCreated(shipmentId="s-1", orderId="o-1")
DELIVERED = ShipmentDelivered(shipmentId="s-1", orderId="o-1")
LOST = ShipmentFailed(shipmentId="s-1", orderId="o-1", reason="address not found")


def new_order() -> Order:
    return place("o-1", "u-1", ITEMS, T0, shipping_address=ADDRESS).order


def run(order: Order, *messages: SagaMessage) -> tuple[Order, list[Payload], list[str]]:
    """Feed messages one after another; the final order, every event, every status reached."""
    events: list[Payload] = []
    statuses: list[str] = []
    for i, message in enumerate(messages):
        reaction = react(order, message, T0 + timedelta(seconds=i + 1))
        order = reaction.order
        events += reaction.events
        statuses += [c.to_status for c in reaction.changes]
    return order, events, statuses


def of_type(events: list[Payload], kind: type[Payload]) -> list[Payload]:
    return [e for e in events if isinstance(e, kind)]


def test_placing_an_order_publishes_created_with_prices_and_total() -> None:
    reaction = place("o-1", "u-1", [*ITEMS, ("p-1", 1, Decimal("10.00"))], T0)
    order = reaction.order
    assert order.status is Status.CREATED and order.total == Decimal("35.50")
    assert [(x.product_id, x.quantity) for x in order.lines] == [("p-1", 3), ("p-2", 1)]
    assert all(x.status is ItemStatus.PENDING for x in order.lines)
    created, changed = reaction.events
    assert isinstance(created, OrderCreated) and created.totalAmount == Decimal("35.50")
    assert created.payment == PaymentMethod(method="wallet"), "no method given: the wallet"
    assert isinstance(changed, OrderStatusChanged) and changed.previousStatus is None
    assert [(c.from_status, c.to_status) for c in reaction.changes] == [(None, "CREATED")]


@pytest.mark.parametrize(
    "items",
    [
        [],
        [("p-1", 0, Decimal(1))],
        [("p-1", 10_001, Decimal(1))],
        [("p-1", 1, Decimal(-1))],
        [("", 1, Decimal(1))],
        [("p-1", 1, Decimal(1)), ("p-1", 1, Decimal(2))],
        [(f"p-{i}", 1, Decimal(1)) for i in range(101)],
        [("p-1", 1, Decimal("0.00001"))],  # OrderCreated carries at most 4 decimal places
        [("p-1", 1, Decimal("NaN"))],
    ],
)
def test_an_order_that_cannot_be_placed_is_refused(items: list[tuple[str, int, Decimal]]) -> None:
    with pytest.raises(InvalidOrder):
        place("o-1", "u-1", items, T0)


def test_the_happy_path_in_order() -> None:
    order, events, statuses = run(new_order(), PAYMENT_STARTED, PAID, RESERVED, SHIPPED, DELIVERED)
    assert statuses == ["PAID", "RESERVED", "DELIVERING", "COMPLETED"]
    assert order.status is Status.COMPLETED and order.payment_id == "pay-1"
    assert all(x.status is ItemStatus.EXECUTED for x in order.lines)
    paid = of_type(events, OrderPaid)
    assert len(paid) == 1 and paid[0].amount == Decimal("25.50")  # type: ignore[attr-defined]
    assert len(of_type(events, OrderCompleted)) == 1
    assert not of_type(events, OrderCancelled)
    changed = of_type(events, OrderStatusChanged)
    assert [e.status for e in changed] == statuses  # type: ignore[attr-defined]


def test_the_hand_over_to_delivery_carries_items_and_address() -> None:
    _, events, _ = run(new_order(), PAID, RESERVED)
    handover = [e for e in of_type(events, OrderStatusChanged) if e.status == "RESERVED"]  # type: ignore[attr-defined]
    assert handover[0].shippingAddress == ADDRESS  # type: ignore[attr-defined]
    assert [(i.productId, i.quantity) for i in handover[0].items] == [("p-1", 2), ("p-2", 1)]  # type: ignore[attr-defined]


def test_reserved_before_paid_waits_for_the_payment_then_goes_through_paid() -> None:
    order, _, statuses = run(new_order(), RESERVED)
    assert order.status is Status.CREATED and statuses == []
    order, _, statuses = run(order, PAID)
    assert statuses == ["PAID", "RESERVED"]


def test_delivery_news_before_the_shipment_news_still_walks_every_step() -> None:
    placed = place("o-1", "u-1", ITEMS, T0)
    history = list(placed.changes)
    order = placed.order
    news: list[SagaMessage] = [DELIVERED, RESERVED, PAID]
    for i, message in enumerate(news):
        reaction = react(order, message, T0 + timedelta(seconds=i))
        order, history = reaction.order, history + list(reaction.changes)
    assert [c.to_status for c in history] == [
        "CREATED",
        "PAID",
        "RESERVED",
        "DELIVERING",
        "COMPLETED",
    ]
    assert history_is_consistent(T0, history)
    assert not history_is_consistent(T0, [history[0], history[2]]), "a skipped step"


def test_duplicates_change_nothing() -> None:
    once, events_once, _ = run(new_order(), PAID, RESERVED, SHIPPED)
    twice, events_twice, _ = run(new_order(), PAID, PAID, RESERVED, RESERVED, SHIPPED, SHIPPED)
    assert twice.status is once.status is Status.DELIVERING
    assert len(events_twice) == len(events_once)


def test_payment_failure_cancels_and_says_what_to_undo() -> None:
    order, events, statuses = run(new_order(), RESERVED, PAYMENT_FAILED)
    assert statuses == ["CANCELLED"] and order.cancelled_from is Status.CREATED
    (cancelled,) = of_type(events, OrderCancelled)
    assert cancelled.previousStatus == "CREATED" and "card declined" in cancelled.reason  # type: ignore[attr-defined]
    assert all(x.status is ItemStatus.CANCELED for x in order.lines)


def test_reservation_failure_after_payment_cancels_from_paid() -> None:
    order, events, _ = run(new_order(), PAID, SHORT)
    assert order.status is Status.CANCELLED
    assert of_type(events, OrderCancelled)[0].previousStatus == "PAID"  # type: ignore[attr-defined]


def test_a_stale_failure_after_success_is_ignored() -> None:
    order, events, _ = run(new_order(), PAID, RESERVED, PAYMENT_FAILED, SHORT)
    assert order.status is Status.RESERVED and not of_type(events, OrderCancelled)


def test_failed_delivery_cancels_from_delivering_even_before_shipment_news() -> None:
    _order, events, statuses = run(new_order(), PAID, RESERVED, LOST)
    assert statuses == ["PAID", "RESERVED", "DELIVERING", "CANCELLED"]
    assert of_type(events, OrderCancelled)[0].previousStatus == "DELIVERING"  # type: ignore[attr-defined]


@pytest.mark.parametrize("steps", [0, 1, 2, 3])
def test_the_customer_may_cancel_before_completion(steps: int) -> None:
    path: list[SagaMessage] = [PAID, RESERVED, SHIPPED]
    order, _, _ = run(new_order(), *path[:steps])
    before = order.status
    order, events, _ = run(order, CustomerCancel())
    assert order.status is Status.CANCELLED
    assert of_type(events, OrderCancelled)[0].previousStatus == before  # type: ignore[attr-defined]
    again, more, _ = run(order, CustomerCancel())
    assert again == order and more == [], "cancelling twice is one cancellation"


def test_a_completed_order_cannot_be_cancelled() -> None:
    order, _, _ = run(new_order(), PAID, RESERVED, SHIPPED, DELIVERED)
    with pytest.raises(CannotCancel):
        react(order, CustomerCancel(), T0)


def test_final_statuses_stay() -> None:
    completed, _, _ = run(new_order(), PAID, RESERVED, SHIPPED, DELIVERED)
    late: tuple[SagaMessage, ...] = (PAYMENT_FAILED, SHORT, LOST, REFUNDED)
    for message in late:
        assert react(completed, message, T0).order.status is Status.COMPLETED
    cancelled, _, _ = run(new_order(), CustomerCancel())
    later: tuple[SagaMessage, ...] = (PAID, RESERVED, SHIPPED, DELIVERED, LOST)
    for message in later:
        assert react(cancelled, message, T0).order.status is Status.CANCELLED


def test_a_payment_completed_after_the_cancellation_is_compensated_once() -> None:
    order, _, _ = run(new_order(), CustomerCancel())
    order, events, _ = run(order, PAID)
    (again,) = of_type(events, OrderCancelled)
    assert again.previousStatus == "CREATED" and "after the cancellation" in again.reason  # type: ignore[attr-defined]
    order, events, _ = run(order, PAID)
    assert events == [], "the duplicate needs no second compensation"


def test_no_compensation_for_a_payment_already_refunded() -> None:
    order, _, _ = run(new_order(), CustomerCancel(), REFUNDED)
    _, events, _ = run(order, PAID)
    assert events == []


def test_a_reservation_after_the_cancellation_is_compensated() -> None:
    order, _, _ = run(new_order(), PAID, PAYMENT_FAILED)  # stale failure: ignored
    order, _, _ = run(order, CustomerCancel("changed my mind"))
    _, events, _ = run(order, RESERVED)
    (again,) = of_type(events, OrderCancelled)
    assert again.previousStatus == "PAID" and again.reason.startswith("changed my mind")  # type: ignore[attr-defined]


def test_timeouts_cancel_the_waiting_step() -> None:
    timeouts = Timeouts(timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=30))
    order = new_order()
    assert deadline(order, timeouts) == (T0 + timedelta(seconds=10), "the payment")
    assert expire(order, timeouts, T0 + timedelta(seconds=9)).changes == ()
    expired = expire(order, timeouts, T0 + timedelta(seconds=10))
    assert expired.order.status is Status.CANCELLED
    assert "payment" in of_type(list(expired.events), OrderCancelled)[0].reason  # type: ignore[attr-defined]

    paid = react(order, PAID, T0).order
    assert deadline(paid, timeouts) == (T0 + timedelta(seconds=20), "the stock reservation")
    reserved = react(paid, RESERVED, T0 + timedelta(seconds=5)).order
    assert deadline(reserved, timeouts) == (T0 + timedelta(seconds=35), "the shipment")
    delivering = react(reserved, SHIPPED, T0 + timedelta(seconds=6)).order
    assert deadline(delivering, timeouts) is None
    assert expire(delivering, timeouts, T0 + timedelta(days=9)).order.status is Status.DELIVERING


@pytest.mark.parametrize(
    ("status", "until", "expected"),
    [
        ("CREATED", "PAID", "pending"),
        ("PAID", "PAID", "reached"),
        ("DELIVERING", "RESERVED", "reached"),
        ("CANCELLED", "PAID", "unreachable"),
        ("CANCELLED", "terminal", "reached"),
        ("COMPLETED", "terminal", "reached"),
        ("DELIVERING", "COMPLETED", "pending"),
    ],
)
def test_wait_outcomes(status: str, until: str, expected: str) -> None:
    order = replace(new_order(), status=Status(status))
    assert outcome(order, Until(until)) is Outcome(expected)


UNCHARGED = PaymentCancelled(paymentId="pay-1", orderId="o-1", reason="x")
RELEASED = StockReleased(orderId="o-1", items=[EventItem(productId="p-1", quantity=2)])
NOTHING_HELD = StockReleased(orderId="o-1", items=[])
CANCEL = CustomerCancel()


@pytest.mark.parametrize(
    ("messages", "pending"),
    [
        ((), ("payment", "reservation")),
        ((PAID,), ("reservation",)),
        ((PAID, RESERVED), ()),
        ((PAID, RESERVED, SHIPPED, DELIVERED), ()),
        # The reservation failed after the capture: settled once the money is back.
        ((PAID, SHORT), ("refund",)),
        ((PAID, SHORT, REFUNDED), ()),
        # The payment failed: settled once the stock is back (or was never taken).
        ((PAYMENT_FAILED,), ("reservation",)),
        ((RESERVED, PAYMENT_FAILED), ("stockRelease",)),
        ((RESERVED, PAYMENT_FAILED, RELEASED), ()),
        ((PAYMENT_FAILED, SHORT), ()),
        # Cancelled before anyone acted: both say they hold nothing and never will.
        ((CANCEL,), ("payment", "reservation")),
        ((CANCEL, UNCHARGED, NOTHING_HELD), ()),
        # A success after the cancellation is compensated before the order is settled.
        ((CANCEL, UNCHARGED, RESERVED), ("stockRelease",)),
        ((CANCEL, PAID, NOTHING_HELD), ("refund",)),
        # Cancelled while the goods travel: settled when they are back and the money too.
        ((PAID, RESERVED, SHIPPED, CANCEL, REFUNDED), ("return",)),
        ((PAID, RESERVED, SHIPPED, LOST, REFUNDED, RELEASED), ()),
    ],
)
def test_settled_once_every_compensation_is_done(
    messages: tuple[SagaMessage, ...], pending: tuple[str, ...]
) -> None:
    order, _, _ = run(new_order(), *messages)
    assert order.pending == pending
    assert order.settled is (not pending)
    assert outcome(order, Until.SETTLED) is (Outcome.REACHED if not pending else Outcome.PENDING)
