"""A hypothesis stateful test of the order saga (``order/domain.py``) in a world of participants.

The order's state machine runs against simple models of payment and inventory and against
shipping's real rules (``shipping/domain.py``). Every event any of them publishes is put "in
flight"; hypothesis chooses which in-flight message arrives next (any order), may deliver one
twice, and mixes in customer cancellations, the clock moving on (step timeouts) and the carrier
delivering or failing. After every step the order's invariants hold; at the end everything in
flight is delivered and the world must have settled consistently: a final status,
money captured − refunded = what a completed order paid, no stock left reserved, every
cancelled order's goods back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mercato.contracts.events import (
    Item,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderPaid,
    OrderStatusChanged,
    Payload,
    PaymentCompleted,
    PaymentFailed,
    PaymentInitiated,
    PaymentRefunded,
    ReturnShipmentCreated,
    ReturnShipmentReceived,
    ShortItem,
    StockReservationFailed,
    StockReserved,
)
from mercato.services.order import domain as saga
from mercato.services.order.domain import (
    CannotCancel,
    Change,
    CustomerCancel,
    ItemStatus,
    Order,
    Status,
    Timeouts,
    rank,
)
from mercato.services.shipping import domain as shipping
from mercato.services.shipping.domain import Kind, Shipment, ShipmentStatus

T0 = datetime(2025, 1, 1, tzinfo=UTC)
TIMEOUTS = Timeouts(timedelta(seconds=150), timedelta(seconds=180), timedelta(seconds=150))
ITEMS = [("p-1", 2, Decimal("10.00")), ("p-2", 1, Decimal("5.25"))]
ITEM_STATUS = {
    Status.CREATED: ItemStatus.PENDING,
    Status.PAID: ItemStatus.PENDING,
    Status.RESERVED: ItemStatus.EXECUTED,
    Status.DELIVERING: ItemStatus.EXECUTED,
    Status.COMPLETED: ItemStatus.EXECUTED,
    Status.CANCELLED: ItemStatus.CANCELED,
}


@dataclass
class Payment:
    """Captures once on OrderCreated (or fails); refunds a capture on any OrderCancelled."""

    succeeds: bool
    answered: bool = False
    captured: Decimal = Decimal(0)
    refunded: Decimal = Decimal(0)

    def handle(self, event: Payload) -> list[Payload]:
        if isinstance(event, OrderCreated) and not self.answered:
            self.answered = True
            started = PaymentInitiated(
                paymentId="pay-1",
                orderId=event.orderId,
                userId=event.userId,
                amount=event.totalAmount,
                status="PENDING",
            )
            if not self.succeeds:
                return [
                    started,
                    PaymentFailed(paymentId="pay-1", orderId=event.orderId, reason="x"),
                ]
            self.captured = event.totalAmount
            return [
                started,
                PaymentCompleted(paymentId="pay-1", orderId=event.orderId, status="OK"),
            ]
        if isinstance(event, OrderCancelled) and self.captured > self.refunded:
            amount, self.refunded = self.captured - self.refunded, self.captured
            return [
                PaymentRefunded(paymentId="pay-1", orderId=event.orderId, amount=amount, reason="")
            ]
        return []


@dataclass
class Inventory:
    """Reserves all or nothing on OrderCreated; releases on cancellation (or, when the goods
    had left, on their return), deducts on completion."""

    succeeds: bool
    answered: bool = False
    held: bool = False
    deducted: bool = False

    def handle(self, event: Payload) -> list[Payload]:
        if isinstance(event, OrderCreated) and not self.answered:
            self.answered = True
            if not self.succeeds:
                short = [ShortItem(productId="p-1", requested=2, available=0)]
                return [StockReservationFailed(orderId=event.orderId, reason="short", items=short)]
            self.held = True
            items = [Item(productId=i.productId, quantity=i.quantity) for i in event.items]
            return [StockReserved(orderId=event.orderId, items=items)]
        if isinstance(event, OrderCancelled) and event.previousStatus != "DELIVERING":
            self.held = False
        elif isinstance(event, PaymentFailed | ReturnShipmentReceived):
            self.held = False
        elif isinstance(event, OrderCompleted) and self.held:
            self.held, self.deducted = False, True
        return []


@dataclass
class Shipping:
    """shipping's real rules over an in-memory store."""

    shipments: dict[str, Shipment] = field(default_factory=dict)
    cancelled: bool = False
    ids: int = 0
    goods_left: bool = False

    def of_kind(self, kind: Kind) -> Shipment | None:
        return next((s for s in self.shipments.values() if s.kind is kind), None)

    def handle(self, event: Payload, now: datetime) -> list[Payload]:
        decision = shipping.Decision()
        if isinstance(event, OrderStatusChanged) and event.status == "RESERVED":
            self.ids += 1
            decision = shipping.ship(
                f"s-{self.ids}",
                event.orderId,
                event.userId,
                event.items or [],
                event.shippingAddress,
                now,
                existing=self.of_kind(Kind.DELIVERY),
                order_cancelled=self.cancelled,
            )
        elif isinstance(event, OrderCancelled):
            self.cancelled = True
            self.ids += 1
            decision = shipping.order_cancelled(
                self.of_kind(Kind.DELIVERY),
                self.of_kind(Kind.RETURN),
                event.previousStatus,
                f"r-{self.ids}",
                now,
            )
        return self.keep(decision)

    def keep(self, decision: shipping.Decision) -> list[Payload]:
        for s in decision.shipments:
            self.shipments[s.shipment_id] = s
            if s.kind is Kind.DELIVERY and s.status is not ShipmentStatus.IN_TRANSIT:
                if s.status is not ShipmentStatus.STOPPED or s.reason == "recalled":
                    self.goods_left = True  # delivered, failed, or turned round on the way
        return list(decision.events)

    def all_of_kind(self, kind: Kind) -> list[Shipment]:
        return [s for s in self.shipments.values() if s.kind is kind]


def consumers(event: Payload) -> list[str]:
    """Who receives an event, as the services bind their queues."""
    match event:
        case OrderCreated():
            return ["payment", "inventory"]
        case OrderCancelled():
            return ["payment", "inventory", "shipping"]
        case OrderStatusChanged(status="RESERVED"):
            return ["shipping"]
        case OrderCompleted():
            return ["inventory"]
        case PaymentFailed():
            return ["order", "inventory"]
        case ReturnShipmentReceived():
            return ["inventory"]
        case OrderStatusChanged() | OrderPaid() | ReturnShipmentCreated():
            return []
        case _:
            return ["order"]


class SagaWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.in_flight: list[tuple[str, Payload]] = []
        self.published: list[Payload] = []
        self.history: list[Change] = []
        self.shipping = Shipping()

    # Failures are drawn a quarter of the time, so most runs get far enough to ship.
    @initialize(
        pays=st.sampled_from([True, True, True, False]),
        in_stock=st.sampled_from([True, True, True, False]),
    )
    def place_the_order(self, pays: bool, in_stock: bool) -> None:
        self.payment = Payment(succeeds=pays)
        self.inventory = Inventory(succeeds=in_stock)
        placed = saga.place("o-1", "u-1", ITEMS, self.now)
        self.order: Order = placed.order
        self.absorb(placed)

    # -- the world moving ------------------------------------------------------------------
    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(min_value=0), twice=st.booleans())
    def a_message_arrives(self, pick: int, twice: bool) -> None:
        """Any message in flight arrives next; ``twice``: it will also arrive again later."""
        index = pick % len(self.in_flight)
        destination, event = self.in_flight[index]
        if not twice:
            del self.in_flight[index]
        self.deliver(destination, event)

    @precondition(lambda self: self.in_flight)
    @rule()
    def the_oldest_message_arrives(self) -> None:
        """The usual case (queues are FIFO), so runs get far along the saga as well."""
        self.deliver(*self.in_flight.pop(0))

    @precondition(lambda self: self.in_flight)
    @rule()
    def the_newest_message_arrives(self) -> None:
        """Overtaking: the last message sent arrives before everything older."""
        self.deliver(*self.in_flight.pop())

    @rule(reason=st.sampled_from(["changed my mind", "found it cheaper"]), now=st.integers(0, 2))
    def the_customer_cancels(self, reason: str, now: int) -> None:
        if now:  # customers mostly wait; a cancellation on every run would end them early
            return
        try:
            reaction = saga.react(self.order, CustomerCancel(reason), self.now)
        except CannotCancel:
            assert self.order.status is Status.COMPLETED
            return
        self.absorb(reaction)

    @rule(seconds=st.integers(min_value=1, max_value=40))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        self.absorb(saga.expire(self.order, TIMEOUTS, self.now))

    @precondition(lambda self: self.on_the_way())
    @rule(pick=st.integers(min_value=0), succeeds=st.booleans(), overtakes=st.booleans())
    def the_carrier_reports(self, pick: int, succeeds: bool, overtakes: bool) -> None:
        """``overtakes``: the carrier's news reaches the order before anything in flight
        (shipping's events need not arrive after the others')."""
        moving = self.on_the_way()
        shipment = moving[pick % len(moving)]
        if succeeds or shipment.kind is Kind.RETURN:
            decision = shipping.deliver(shipment, self.now)
        else:
            decision = shipping.fail(shipment, "nobody home", self.now)
        news = self.shipping.keep(decision)
        self.send(news)
        if overtakes:
            for event in news:
                if ("order", event) in self.in_flight:
                    self.in_flight.remove(("order", event))
                    self.deliver("order", event)

    # -- invariants after every step -------------------------------------------------------
    @invariant()
    def the_history_never_goes_back(self) -> None:
        assert saga.history_is_consistent(T0, self.history)
        assert self.history[-1].to_status == self.order.status

    @invariant()
    def items_follow_the_order(self) -> None:
        assert {line.status for line in self.order.lines} == {ITEM_STATUS[self.order.status]}

    @invariant()
    def every_change_is_published_once(self) -> None:
        changed = [e for e in self.published if isinstance(e, OrderStatusChanged)]
        assert [e.status for e in changed] == [c.to_status for c in self.history]
        paid = [e for e in self.published if isinstance(e, OrderPaid)]
        assert len(paid) == (1 if "PAID" in changed_statuses(self.history) else 0)
        completed = [e for e in self.published if isinstance(e, OrderCompleted)]
        assert len(completed) == (1 if self.order.status is Status.COMPLETED else 0)
        cancels = [e for e in self.published if isinstance(e, OrderCancelled)]
        assert bool(cancels) == (self.order.status is Status.CANCELLED)

    @invariant()
    def cancellations_say_what_was_undone(self) -> None:
        for e in self.published:
            if isinstance(e, OrderCancelled):
                assert e.previousStatus == self.order.cancelled_from

    @invariant()
    def goods_out_after_a_failed_delivery_stay_reserved(self) -> None:
        """Until the return brings them back, goods a carrier failed to deliver are not for sale
        again (the cancellation said DELIVERING, whatever order the shipment news came in)."""
        delivery = self.shipping.of_kind(Kind.DELIVERY)
        back = self.shipping.of_kind(Kind.RETURN)
        home = back is not None and back.status is ShipmentStatus.DELIVERED
        failed = delivery is not None and delivery.status is ShipmentStatus.FAILED
        if failed and not home and (self.order.cancel_reason or "").startswith("delivery failed"):
            assert self.inventory.held

    def teardown(self) -> None:
        """Let everything in flight arrive, and the carrier finish; then the world is settled."""
        if not hasattr(self, "order"):
            return
        for _ in range(500):
            if self.in_flight:
                self.deliver(*self.in_flight.pop(0))
            elif moving := self.on_the_way():
                self.send(self.shipping.keep(shipping.deliver(moving[0], self.now)))
            else:
                break
            self.check_every_invariant()
        else:
            raise AssertionError("the world never settled")
        order = self.order
        assert order.status in (Status.COMPLETED, Status.CANCELLED)
        kept = self.payment.captured - self.payment.refunded
        assert kept == (order.total if order.status is Status.COMPLETED else 0)
        assert not self.inventory.held, "stock still reserved for a settled order"
        assert self.inventory.deducted == (order.status is Status.COMPLETED)
        deliveries = self.shipping.all_of_kind(Kind.DELIVERY)
        returns = self.shipping.all_of_kind(Kind.RETURN)
        assert len(deliveries) <= 1 and len(returns) <= 1
        if order.status is Status.COMPLETED:
            assert deliveries[0].status is ShipmentStatus.DELIVERED and not returns
        else:
            left = self.shipping.goods_left or order.cancelled_from is Status.DELIVERING
            assert len(returns) == (1 if left else 0), "a return exactly when the goods had left"
            assert all(r.status is ShipmentStatus.DELIVERED for r in returns)
            if rank(order.cancelled_from or Status.CREATED) < rank(Status.RESERVED):
                assert not deliveries, "nothing ships for an order cancelled before hand-over"

    # -- plumbing --------------------------------------------------------------------------
    def check_every_invariant(self) -> None:
        self.the_history_never_goes_back()
        self.items_follow_the_order()
        self.every_change_is_published_once()
        self.cancellations_say_what_was_undone()
        self.goods_out_after_a_failed_delivery_stay_reserved()

    def on_the_way(self) -> list[Shipment]:
        return [s for s in self.shipping.shipments.values() if s.in_transit]

    def deliver(self, destination: str, event: Payload) -> None:
        if destination == "order":
            before = self.order
            reaction = saga.react(self.order, event, self.now)  # type: ignore[arg-type]
            if before.status is Status.CANCELLED:
                late_success = (
                    isinstance(event, PaymentCompleted) and not (before.paid or before.refunded)
                ) or (isinstance(event, StockReserved) and not before.reserved)
                compensated = any(isinstance(e, OrderCancelled) for e in reaction.events)
                assert compensated == late_success, "a late success is compensated, once"
            self.absorb(reaction)
        elif destination == "payment":
            self.send(self.payment.handle(event))
        elif destination == "inventory":
            self.send(self.inventory.handle(event))
        else:
            self.send(self.shipping.handle(event, self.now))

    def absorb(self, reaction: saga.Reaction) -> None:
        before = self.order if hasattr(self, "order") else None
        if before is not None and before.is_final:
            assert reaction.order.status is before.status, "a final status stays"
        self.order = reaction.order
        self.history += reaction.changes
        self.send(list(reaction.events))

    def send(self, events: list[Payload]) -> None:
        self.published += events
        self.in_flight += [(who, e) for e in events for who in consumers(e)]


def changed_statuses(history: list[Change]) -> list[str]:
    return [c.to_status for c in history]


SagaWorld.TestCase.settings = settings(
    max_examples=500,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_the_saga_settles_consistently_whatever_the_order_of_events = SagaWorld.TestCase
