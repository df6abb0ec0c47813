"""What notification tells whom: the kinds of notification, their recipients, and the rules of
sending mail (when to try again, what a failure means). No I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum


class Audience(Enum):
    OWNER = "owner"  # the user the event is about (the order's owner)
    ADMINS = "admins"  # every admin known


@dataclass(frozen=True)
class Kind:
    name: str  # also the template's name
    audience: Audience
    needs_order: bool = False  # the mail lists the order's items and totals


WELCOME = Kind("welcome", Audience.OWNER)
ORDER_PAID = Kind("order_paid", Audience.OWNER, needs_order=True)
ORDER_DELIVERING = Kind("order_delivering", Audience.OWNER, needs_order=True)
ORDER_COMPLETED = Kind("order_completed", Audience.OWNER, needs_order=True)
ORDER_CANCELLED = Kind("order_cancelled", Audience.OWNER, needs_order=True)
PAYMENT_FAILED = Kind("payment_failed", Audience.OWNER, needs_order=True)
PAYMENT_REFUNDED = Kind("payment_refunded", Audience.OWNER, needs_order=True)
SHIPMENT_CREATED = Kind("shipment_created", Audience.OWNER, needs_order=True)
STOCK_LOW = Kind("stock_low", Audience.ADMINS)
OUT_OF_STOCK = Kind("out_of_stock", Audience.ADMINS)

KINDS = {
    k.name: k
    for k in (
        WELCOME,
        ORDER_PAID,
        ORDER_DELIVERING,
        ORDER_COMPLETED,
        ORDER_CANCELLED,
        PAYMENT_FAILED,
        PAYMENT_REFUNDED,
        SHIPMENT_CREATED,
        STOCK_LOW,
        OUT_OF_STOCK,
    )
}


class MailStatus(StrEnum):
    PENDING = "pending"  # to send, from ``not_before``
    CLAIMED = "claimed"  # a sender talks to the server; nothing handed over yet
    SENDING = "sending"  # the message is being handed over
    SENT = "sent"
    DEAD = "dead"  # tried enough, or refused for good
    UNKNOWN = "unknown"  # the hand-over was cut: it may have arrived
    NONE = "none"  # inbox only (the recipient has no mail address)


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``base`` doubling up to ``cap``; ``attempts`` in all."""

    attempts: int
    base: float
    cap: float = 300.0

    def wait(self, attempt: int) -> timedelta:
        return timedelta(seconds=min(self.base * 2 ** max(attempt - 1, 0), self.cap))

    def next_try(self, attempt: int, now: datetime) -> datetime | None:
        """When to try again after failed attempt number ``attempt``; None: give up."""
        return None if attempt >= self.attempts else now + self.wait(attempt)


# A request whose order (or user) is not known yet waits for the event that makes it known:
# a few tries over about a minute, then it is composed with what is known (an order's mail
# without its items) or, with no one to send it to, a dead letter.
WAIT_FOR_FACTS = Backoff(attempts=8, base=0.25, cap=30.0)


def short_id(order_id: str) -> str:
    """The end of an id, as a person reads it in a subject line (UUIDv7s start alike)."""
    return order_id[-8:].upper()
