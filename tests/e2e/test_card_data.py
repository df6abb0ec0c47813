"""No full card number and no CVC is kept anywhere: after checkouts, orders, a seed-003
order, a refused card and a replay with another card, neither appears in the logs (at debug
level), in any event, nor in any byte of any database file; no table has a column for them.

The card is made up for the run (a Luhn-valid number no other test uses), so that finding its
digits anywhere means it was kept.
"""

from __future__ import annotations

import random
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from mercato.platform.logs import configure_logging
from tests.e2e.test_saga import ADDRESS, Shop, open_shop
from tests.e2e.test_storefront import PROBLEM

# Column names a card number or a CVC would be kept under.
CARD_COLUMNS = re.compile(r"card_?number|cvc|cvv|\bpan\b", re.IGNORECASE)


def luhn_card(prefix: str = "4") -> str:
    body = prefix + "".join(random.choice("0123456789") for _ in range(14 - len(prefix) + 1))
    for check in "0123456789":
        digits = body + check
        total = sum(
            (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
            for i, d in enumerate(int(c) for c in reversed(digits))
        )
        if total % 10 == 0:
            return digits
    raise AssertionError("unreachable")


async def use_the_card(shop: Shop, number: str, cvc: str) -> None:
    ada = await shop.customer()
    cup = await shop.product(quantity=50)
    spaced = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    payment = {
        "method": "card",
        "cardNumber": spaced,
        "expiry": "12/39",
        "cvc": cvc,
        "holder": "Ada",
    }
    once = {**ada, "Idempotency-Key": "card-scan-1"}
    # A checkout of the cart, twice under one key, then under the key with another card.
    added = await shop.http.post("/api/v1/cart/items", json={"productId": cup}, headers=ada)
    assert added.status_code == 200, added.text
    checkout = {"payment": payment, "shippingAddress": ADDRESS}
    for _ in range(2):
        placed = await shop.http.post("/api/v1/cart/checkout", json=checkout, headers=once)
        assert placed.status_code == 202, placed.text
    other = {**checkout, "payment": {**payment, "cardNumber": luhn_card("5")}}
    replayed = await shop.http.post("/api/v1/cart/checkout", json=other, headers=once)
    assert replayed.status_code == 422 and replayed.headers["content-type"] == PROBLEM
    # An order placed directly, and one through seed 003's card string.
    order = await shop.place(ada, [(cup, 1)], payment=payment)
    await shop.wait(ada, order["orderId"], "RESERVED")
    seed = {
        "products": {"option": [{"id": cup}]},
        "cardParams": f"{number}; {cvc}; Ada Lovelace",
        "shippingTo": "1 Row",
    }
    made = await shop.http.post("/api/v1/orders/create", json=seed, headers=ada)
    assert made.status_code == 200, made.text
    # A card refused at the door (one digit off), echoed nowhere.
    wrong = number[:-1] + str((int(number[-1]) + 1) % 10)
    refused = await shop.http.post(
        "/api/v1/orders",
        json={
            "items": [{"productId": cup, "quantity": 1}],
            "payment": {**payment, "cardNumber": wrong},
            "shippingAddress": ADDRESS,
        },
        headers=ada,
    )
    assert refused.status_code == 422 and wrong not in refused.text


def read_databases(data_dir: Path) -> tuple[list[str], list[str]]:
    """Every column (``db.table.column``) and every event (outbox envelope) of the services'
    SQLite files."""
    columns, events = [], []
    for path in sorted(data_dir.glob("*.db")):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            for table in tables:
                columns += [
                    f"{path.stem}.{table}.{r[1]}"
                    for r in db.execute(f"PRAGMA table_info('{table}')")
                ]
            if "outbox" in tables:
                events += [r[0] for r in db.execute("SELECT envelope FROM outbox")]
    return columns, events


def kept_anywhere(data_dir: Path, needles: list[bytes]) -> list[str]:
    """Where under ``data_dir`` (databases, their WAL, keys) a needle's bytes are."""
    found = []
    for path in sorted(data_dir.rglob("*")):
        if path.is_file():
            content = path.read_bytes()
            found += [f"{path.name}: {n!r}" for n in needles if n in content]
    return found


async def test_no_card_number_or_cvc_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    number, cvc = luhn_card(), f"{random.randrange(1000, 10_000)}"
    spaced = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    configure_logging("debug", "json")
    async for shop in open_shop(tmp_path, log_level="debug"):
        await use_the_card(shop, number, cvc)
        columns, events = read_databases(tmp_path)
        assert [c for c in columns if CARD_COLUMNS.search(c)] == []
    logs = capsys.readouterr().err
    assert '"level": "debug"' in logs or '"level": "info"' in logs  # the logs were captured
    assert events, "no events were read"
    text = "\n".join([logs, *map(str, events)])
    for needle in (number, spaced, f"{number}; {cvc}", f'"cvc": "{cvc}"', f'"cvc":"{cvc}"'):
        assert needle not in text, needle
    assert not any('"cvc"' in e or '"cardNumber"' in e for e in events)
    needles = [number.encode(), spaced.encode(), f"{number}; {cvc}".encode()]
    assert kept_anywhere(tmp_path, needles) == []
