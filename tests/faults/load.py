"""The fault suite's load: the bench's shoppers (``mercato.bench.shoppers``) checking out
through the gateway on 127.0.0.1, every checkout with an Idempotency-Key, some sent twice,
some paid with a card that declines, some cancelled by the shopper; bounded in orders and in
seconds. ``MERCATO_LONG=1`` makes it longer and wider."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from mercato.bench import shoppers
from mercato.bench.client import Client
from tests.conftest import LONG
from tests.faults.invariants import Expected
from tests.faults.system import ADMIN

SHOPPERS = 12 if LONG else 6
SECONDS = 30.0 if LONG else 4.0  # of load per case
MAX_ORDERS = int(SECONDS * 40)  # a bound the load never reaches on this machine
PLENTY, SCARCE = 100_000, 150 if LONG else 40  # units of each product
MIX = shoppers.Mix(declined=0.15, cancelled=0.15, repeated=0.1, keyed=True)


def _nothing(_: int) -> None:
    pass


@dataclass
class Shoppers:
    http: Client
    people: list[shoppers.Headers]
    products: list[str]

    async def shop(self, expected: Expected, seconds: float = SECONDS) -> shoppers.Load:
        """One case's load; every answer it got goes to ``expected``."""
        load = await shoppers.shop(
            self.http, self.people, self.products, MAX_ORDERS, seconds, _nothing, mix=MIX
        )
        expected.answers += load.answers
        return load


async def set_up(http: Client, expected: Expected) -> Shoppers:
    """Products (most with plenty of stock, two that run out over the session) and shoppers
    signed in."""
    tag = uuid.uuid4().hex[:6]
    admin = await shoppers.sign_in(http, ADMIN["email"], ADMIN["password"])
    plenty = await shoppers.create_products(http, admin, 6, PLENTY, tag, _nothing)
    scarce = await shoppers.create_products(http, admin, 2, SCARCE, tag + "s", _nothing)
    expected.received |= dict.fromkeys(plenty, PLENTY) | dict.fromkeys(scarce, SCARCE)
    people = await shoppers.sign_up_shoppers(http, SHOPPERS, tag, _nothing)
    return Shoppers(http, people, plenty + scarce)
