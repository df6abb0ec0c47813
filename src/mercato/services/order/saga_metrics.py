"""The saga's Prometheus metrics: how long an order took to reach each step, and why orders
were cancelled (``mercato_saga_step_seconds``, ``mercato_orders_cancelled_total``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mercato.platform.metrics import ORDERS_CANCELLED, SAGA_STEP_SECONDS
from mercato.services.order.domain import Change, Status

STEPS = {
    Status.PAID: "paid",
    Status.RESERVED: "reserved",
    Status.DELIVERING: "delivering",
    Status.COMPLETED: "completed",
}
# The reasons the saga writes (domain.react, domain.expire), by how they begin; any other is
# the customer's (or an admin's) own words, never a label.
_REASONS = (
    ("payment failed", "payment_failed"),
    ("stock reservation failed", "reservation_failed"),
    ("delivery failed", "delivery_failed"),
    ("timed out waiting for the payment", "payment_timeout"),
    ("timed out waiting for the stock reservation", "reservation_timeout"),
    ("timed out waiting for the shipment", "shipment_timeout"),
)


def cancel_reason(reason: str | None) -> str:
    """The label of a cancellation's reason."""
    for start, label in _REASONS:
        if (reason or "").startswith(start):
            return label
    return "customer"


def observe(created_at: datetime, changes: Sequence[Change]) -> None:
    """Count the committed ``changes`` of an order created at ``created_at``."""
    for change in changes:
        step = STEPS.get(change.to_status)
        if step is not None:
            SAGA_STEP_SECONDS.labels(step).observe((change.at - created_at).total_seconds())
        elif change.to_status is Status.CANCELLED:
            ORDERS_CANCELLED.labels(cancel_reason(change.reason)).inc()
