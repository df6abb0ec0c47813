"""Cart rules: what may go in a cart, what it costs, what a checkout needs.

Pure: no database, no clock of its own (``now`` is passed in), no infrastructure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

# A shop's cart, not a wholesale order: more than this of one product is a typing mistake.
MAX_LINE_QUANTITY = 1_000
MAX_LINES = 100
MAX_PRODUCT_ID = 200
DEFAULT_CURRENCY = "USD"
_LAST4 = re.compile(r"^[0-9]{4}$")
_CENTS = Decimal("0.01")


class CartRefused(Exception):
    """The request cannot be carried out on this cart; the message says why, for the client."""


class Invalid(CartRefused):
    """Bad input (a quantity out of range, a malformed address)."""


class NotInCart(CartRefused):
    pass


class UnknownProduct(CartRefused):
    pass


class CatalogUnavailable(CartRefused):
    """The catalog cannot confirm products right now (the client may retry)."""


class CannotSell(CartRefused):
    """The cart's state forbids it: an empty cart, a product no longer sold, two currencies."""


class CartChanged(CartRefused):
    """The cart changed while it was being checked out; the client should retry."""


@dataclass(frozen=True)
class Line:
    product_id: str
    name: str
    quantity: int
    price: Decimal
    currency: str

    @property
    def total(self) -> Decimal:
        return self.price * self.quantity


def check_product_id(product_id: str) -> str:
    if not 1 <= len(product_id) <= MAX_PRODUCT_ID or not product_id.isprintable():
        raise Invalid(f"a product id is 1 to {MAX_PRODUCT_ID} printable characters")
    return product_id


def check_quantity(quantity: int) -> int:
    if not 1 <= quantity <= MAX_LINE_QUANTITY:
        raise Invalid(f"a quantity is from 1 to {MAX_LINE_QUANTITY}")
    return quantity


def added(existing: Line | None, quantity: int) -> int:
    """The line's quantity after adding ``quantity`` to it."""
    total = (existing.quantity if existing else 0) + check_quantity(quantity)
    if total > MAX_LINE_QUANTITY:
        raise Invalid(f"a cart holds at most {MAX_LINE_QUANTITY} of one product")
    return total


def check_room(lines: Iterable[Line], product_id: str) -> None:
    ids = {line.product_id for line in lines}
    if product_id not in ids and len(ids) >= MAX_LINES:
        raise Invalid(f"a cart holds at most {MAX_LINES} different products")


def check_currency(lines: Iterable[Line], currency: str, product_id: str) -> None:
    """One cart, one currency: an order is paid in one."""
    others = {line.currency for line in lines if line.product_id != product_id}
    if others and currency not in others:
        raise CannotSell(
            f"the cart is in {sorted(others)[0]} and this product is priced in {currency}"
        )


def currency_of(lines: Iterable[Line]) -> str:
    currencies = sorted({line.currency for line in lines})
    if len(currencies) > 1:
        raise CannotSell(f"the cart mixes currencies {currencies}; remove items to pay in one")
    return currencies[0] if currencies else DEFAULT_CURRENCY


def total_of(lines: Iterable[Line]) -> Decimal:
    return sum((line.total for line in lines), Decimal(0))


def money_text(amount: Decimal) -> str:
    """A decimal string with at least two places ("5.00", "19.99", "0.125")."""
    return f"{amount.quantize(_CENTS) if amount == amount.quantize(_CENTS) else amount:f}"


# -- checkout --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Payment:
    """How the order will be paid: a card token and its last four digits, or the wallet."""

    method: str
    token: str | None = None
    last4: str | None = None


@dataclass(frozen=True)
class Address:
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None


def check_payment(method: str, token: str, last4: str) -> Payment:
    if method == "wallet":
        if token or last4:
            raise Invalid("a wallet payment has no card token")
        return Payment("wallet")
    if method == "card":
        if not 1 <= len(token) <= 200 or not token.isprintable():
            raise Invalid("a card payment needs the card's token")
        if not _LAST4.match(last4):
            raise Invalid("a card payment needs the card's last four digits")
        return Payment("card", token, last4)
    raise Invalid("the payment method is 'card' or 'wallet'")


def _text(value: str, what: str, longest: int = 200, shortest: int = 1) -> str:
    value = value.strip()
    if not shortest <= len(value) <= longest or not value.isprintable():
        raise Invalid(f"the address needs a {what} of {shortest} to {longest} printable characters")
    return value


def check_address(
    name: str, line1: str, line2: str | None, city: str, postal_code: str, country: str
) -> Address:
    return Address(
        name=_text(name, "name"),
        line1=_text(line1, "first line"),
        line2=_text(line2, "second line") if line2 and line2.strip() else None,
        city=_text(city, "city"),
        postal_code=_text(postal_code, "postal code", 20),
        country=_text(country, "country", 56, shortest=2),
    )
