"""Inventory's pure rules: what an order asks for, and when stock is worth a warning."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Reservation(StrEnum):
    """What became of an order's claim on stock (one row per order id)."""

    RESERVED = "RESERVED"  # taken from available, held for the order
    FAILED = "FAILED"  # nothing was taken: some item was short
    RELEASED = "RELEASED"  # given back to available (cancelled or payment failed)
    RETURNING = "RETURNING"  # cancelled in delivery: held until the return arrives
    RETURNED = "RETURNED"  # the returned goods are back on hand
    DEDUCTED = "DEDUCTED"  # shipped and delivered: gone for good
    CANCELLED = "CANCELLED"  # tombstone: cancelled before OrderCreated was seen


class Movement(StrEnum):
    """What changed a product's stock (a row of stock_movements)."""

    STOCKED = "stocked"  # the product's first stock, from ProductCreated
    SET = "set"  # what is available set (ProductUpdated's quantity, an admin's bulk set)
    RESTOCKED = "restocked"  # an admin added units
    REMOVED = "removed"  # an admin took units away
    RESERVED = "reserved"  # held for an order
    RELEASED = "released"  # an order's hold given back
    DEDUCTED = "deducted"  # an order's hold gone for good (delivered)
    RETURNED = "returned"  # an order's goods back on hand
    RETIRED = "retired"  # the product was deleted


@dataclass(frozen=True)
class Step:
    """A move of an order's reservation from one of ``sources`` to ``target``; ``tombstone``:
    the status written when the order has no reservation yet. Taken only by a handler whose
    conditional write moved the row (``store.move``), so each step is taken once per order
    whichever replicas handle the order's events at the same moment."""

    sources: tuple[Reservation, ...]
    target: Reservation
    tombstone: Reservation | None = None


SHORT = Step((Reservation.RESERVED,), Reservation.FAILED)  # the claim just written, refused
RELEASE = Step((Reservation.RESERVED,), Reservation.RELEASED, tombstone=Reservation.CANCELLED)
AWAIT_RETURN = Step((Reservation.RESERVED,), Reservation.RETURNING)
DEDUCT = Step((Reservation.RESERVED,), Reservation.DEDUCTED)
RETURN_HELD = Step((Reservation.RESERVED, Reservation.RETURNING), Reservation.RETURNED)
RETURN_DEDUCTED = Step((Reservation.DEDUCTED,), Reservation.RETURNED)
STEPS = (SHORT, RELEASE, AWAIT_RETURN, DEDUCT, RETURN_HELD, RETURN_DEDUCTED)


def merge_lines(lines: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """One line per product, sorted by product id.

    Sorting gives every transaction the same lock order, so two orders sharing products
    cannot deadlock on PostgreSQL's row locks.
    """
    totals: dict[str, int] = {}
    for product_id, quantity in lines:
        totals[product_id] = totals.get(product_id, 0) + quantity
    return sorted(totals.items())


def warnings_for(available: int, threshold: int) -> tuple[bool, bool]:
    """(low, out): low when below the threshold but not zero, out at zero."""
    return (0 < available < threshold, available <= 0)
