"""cart's rules, without any I/O."""

from __future__ import annotations

from decimal import Decimal

import pytest

from mercato.services.cart import domain
from mercato.services.cart.domain import CannotSell, Invalid, Line


def line(product_id: str, quantity: int = 1, price: str = "2.50", currency: str = "USD") -> Line:
    return Line(product_id, product_id.title(), quantity, Decimal(price), currency)


def test_totals_are_exact_decimals() -> None:
    lines = [line("a", 3, "0.10"), line("b", 1, "19.99")]
    assert domain.total_of(lines) == Decimal("20.29")
    assert domain.total_of([]) == 0


@pytest.mark.parametrize(
    ("amount", "text"),
    [("5", "5.00"), ("19.9", "19.90"), ("0.125", "0.125"), ("1200.0000", "1200.00"), ("0", "0.00")],
)
def test_money_text_has_at_least_two_places(amount: str, text: str) -> None:
    assert domain.money_text(Decimal(amount)) == text


def test_adding_sums_quantities_up_to_the_limit() -> None:
    assert domain.added(None, 3) == 3
    assert domain.added(line("a", 3), 4) == 7
    assert domain.added(line("a", 999), 1) == domain.MAX_LINE_QUANTITY
    for bad in (0, -1, domain.MAX_LINE_QUANTITY + 1):
        with pytest.raises(Invalid):
            domain.added(None, bad)
    with pytest.raises(Invalid):
        domain.added(line("a", 999), 2)


def test_a_cart_keeps_one_currency() -> None:
    usd = [line("a"), line("b")]
    domain.check_currency(usd, "USD", "c")
    domain.check_currency([line("a")], "EUR", "a")  # the only line changes currency: fine
    with pytest.raises(CannotSell):
        domain.check_currency(usd, "EUR", "c")
    assert domain.currency_of(usd) == "USD" and domain.currency_of([]) == "USD"
    with pytest.raises(CannotSell):
        domain.currency_of([line("a"), line("b", currency="EUR")])


def test_a_cart_has_room_for_a_hundred_products() -> None:
    full = [line(f"p{i}") for i in range(domain.MAX_LINES)]
    domain.check_room(full, "p7")  # more of one already there
    with pytest.raises(Invalid):
        domain.check_room(full, "new")


def test_payment_is_a_card_token_with_last_four_or_the_wallet() -> None:
    assert domain.check_payment("card", "tok_x", "4242") == domain.Payment("card", "tok_x", "4242")
    assert domain.check_payment("wallet", "", "") == domain.Payment("wallet")
    for method, token, last4 in [
        ("card", "", "4242"),
        ("card", "tok_x", "424"),
        ("card", "tok_x", "４２４２"),  # digits, but not ASCII ones
        ("wallet", "tok_x", ""),
        ("cheque", "", ""),
    ]:
        with pytest.raises(Invalid):
            domain.check_payment(method, token, last4)


def test_an_address_is_trimmed_and_complete() -> None:
    address = domain.check_address(" Ada ", "1 Row", "  ", "London", "N1", "GB")
    assert address == domain.Address("Ada", "1 Row", "London", "N1", "GB")
    with pytest.raises(Invalid):
        domain.check_address("Ada", "", None, "London", "N1", "GB")
    with pytest.raises(Invalid):
        domain.check_address("Ada", "1 Row", None, "London", "N\n1", "GB")
    with pytest.raises(Invalid):
        domain.check_address("Ada", "1 Row", None, "London", "N1", "G")
