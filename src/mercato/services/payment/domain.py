"""Payment's pure rules: card checks, the sandbox card outcomes, amounts, payment states.

No infrastructure here. A card number lives only in the call that tokenizes it; what is kept
is the last four digits, the brand and the outcome the sandbox decided for it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

# Amounts are kept as integer ten-thousandths (Money has at most four decimal places), so a
# wallet's conditional update is exact on SQLite and PostgreSQL alike.
UNITS = Decimal(10_000)


def to_units(amount: Decimal) -> int:
    units = amount * UNITS
    if units != units.to_integral_value():
        raise ValueError(f"amount {amount} has more than four decimal places")
    return int(units)


def from_units(units: int) -> Decimal:
    return (Decimal(units) / UNITS).quantize(Decimal("0.0001")).normalize()


class Outcome(StrEnum):
    """What the sandbox provider does with a card (the test cards of docs/design.md)."""

    APPROVED = "approved"
    DECLINED = "declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    PROCESSING_ERROR = "processing_error"  # authorizes, then the capture fails


SANDBOX_CARDS = {
    "4000000000000002": Outcome.DECLINED,
    "4000000000009995": Outcome.INSUFFICIENT_FUNDS,
    "4000000000000119": Outcome.PROCESSING_ERROR,
}

REASONS = {
    Outcome.DECLINED: "card declined",
    Outcome.INSUFFICIENT_FUNDS: "insufficient funds",
    Outcome.PROCESSING_ERROR: "processing error",
}


class Status(StrEnum):
    INITIATED = "INITIATED"
    AUTHORIZED = "AUTHORIZED"
    CAPTURED = "CAPTURED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"
    # OrderCancelled came before OrderCreated: the tombstone that keeps a late create uncharged.
    CANCELLED = "CANCELLED"


class CardError(ValueError):
    pass


@dataclass(frozen=True)
class Card:
    last4: str
    brand: str
    exp_month: int
    exp_year: int
    holder: str
    outcome: Outcome


def luhn_valid(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def brand_of(number: str) -> str:
    if number.startswith("4"):
        return "visa"
    if number[:2] in {"51", "52", "53", "54", "55"} or "2221" <= number[:4] <= "2720":
        return "mastercard"
    if number[:2] in {"34", "37"}:
        return "amex"
    return "unknown"


def parse_expiry(expiry: str, now_year: int, now_month: int) -> tuple[int, int]:
    """``MM/YY`` or ``MM/YYYY``; an expired card is refused."""
    month_s, sep, year_s = expiry.strip().partition("/")
    if not sep or not month_s.strip().isdigit() or not year_s.strip().isdigit():
        raise CardError("expiry must be MM/YY")
    month, year = int(month_s), int(year_s)
    year = 2000 + year if year < 100 else year
    if not 1 <= month <= 12:
        raise CardError("expiry month must be 1-12")
    if (year, month) < (now_year, now_month):
        raise CardError("card has expired")
    return month, year


def card_digest(key: bytes, number: str, card: Card, cvc: str) -> str:
    """A keyed hash of the card as given (number, expiry, CVC, holder): the same for the same
    details, so a retry's card can be told from another, and useless without ``key``."""
    digits = number.replace(" ", "").replace("-", "")
    given = f"{digits}\0{card.exp_month}/{card.exp_year}\0{cvc}\0{card.holder}"
    return hmac.new(key, given.encode(), hashlib.sha256).hexdigest()


def check_card(
    number: str, expiry: str, cvc: str, holder: str, *, now_year: int, now_month: int
) -> Card:
    """The card's kept facts, or CardError; the number itself is not part of the result."""
    digits = number.replace(" ", "").replace("-", "")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise CardError("card number must be 12-19 digits")
    if not luhn_valid(digits):
        raise CardError("card number is not valid")
    if not cvc.isdigit() or len(cvc) not in (3, 4):
        raise CardError("cvc must be 3 or 4 digits")
    if not holder.strip() or len(holder) > 200:
        raise CardError("card holder name is required (at most 200 characters)")
    month, year = parse_expiry(expiry, now_year, now_month)
    outcome = SANDBOX_CARDS.get(digits, Outcome.APPROVED)
    return Card(digits[-4:], brand_of(digits), month, year, holder.strip(), outcome)
