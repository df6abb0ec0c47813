"""Catalog rules: what a valid product is, and how a listing may be sorted and paged."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MAX_PRICE = Decimal("1000000000")
MAX_QUANTITY = 1_000_000_000
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
# The most of one product a single cart line or order may ask for.
MAX_ITEM_QUANTITY = 10_000
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class Invalid(ValueError):
    """Bad input, said in words a client can act on."""


@dataclass(frozen=True)
class Page:
    number: int
    size: int

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("a product name has 1 to 200 characters")
    return name


def check_product_id(raw: str) -> str:
    if not 1 <= len(raw) <= 64 or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise Invalid("a product id is 1 to 64 printable ASCII characters without spaces")
    return raw


def check_description(text: str) -> str:
    if len(text) > 5000:
        raise Invalid("a description has at most 5000 characters")
    return text.strip()


def check_category(category: str) -> str:
    category = category.strip().lower()
    if len(category) > 100:
        raise Invalid("a category has at most 100 characters")
    return category


def check_price(amount: str) -> Decimal:
    try:
        price = Decimal(amount)
    except (InvalidOperation, TypeError):
        raise Invalid(f"price {amount!r} is not a decimal amount") from None
    if not price.is_finite() or price < 0 or price >= MAX_PRICE:
        raise Invalid("a price is a finite amount from 0 to 999999999.99")
    if price != price.quantize(Decimal("0.01")):
        raise Invalid("a price has at most two decimal places")
    return price.quantize(Decimal("0.01"))


def check_currency(currency: str) -> str:
    if not _CURRENCY.match(currency):
        raise Invalid("a currency is a three-letter ISO 4217 code such as USD")
    return currency


def check_quantity(quantity: int) -> int:
    if not 0 <= quantity <= MAX_QUANTITY:
        raise Invalid(f"a quantity is from 0 to {MAX_QUANTITY}")
    return quantity


def check_item_quantity(quantity: int) -> int:
    if not 1 <= quantity <= MAX_ITEM_QUANTITY:
        raise Invalid(f"an item quantity is from 1 to {MAX_ITEM_QUANTITY}")
    return quantity


def check_page(number: int, size: int) -> Page:
    number = number or 1
    size = size or DEFAULT_PAGE_SIZE
    if number < 1 or number > 100_000:
        raise Invalid("page starts at 1")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise Invalid(f"pageSize is from 1 to {MAX_PAGE_SIZE}")
    return Page(number, size)


def search_text(name: str, description: str) -> str:
    """What a search looks in: the name and the description, lowercased here (Unicode, the
    same on every database: SQLite's ``lower()`` knows ASCII only). A newline between them,
    so no word of a search (which has no whitespace) spans the two."""
    return f"{name.lower()}\n{description.lower()}"
