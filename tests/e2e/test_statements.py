"""What a shopper's trip costs SQLite (embedded): no statement is prepared again at every run.

SQLite prepares a statement again, before running it, when the plan it chose depends on a
value bound to it: a LIKE against a bound pattern, a partial index whose condition compares a
column with a bound value. That costs a parse and a plan every time (a third of the search's
time in SQLite and of cart's statements, ``docs/performance.md``). SQLite counts it per
statement in ``sqlite_stmt`` (the column ``reprep``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mercato.platform.storage.sql import SqliteDatabase
from mercato.services import all_services
from tests.support import ADDRESS, ADMIN, PAYMENT, running
from tests.support import test_settings as make_settings

SHOPPER = {"email": "ada@example.com", "password": "correct horse 9", "name": "Ada"}


def reprepared(db: SqliteDatabase) -> dict[str, int]:
    """The statements on ``db``'s connections that SQLite prepared again, and how often."""
    found: dict[str, int] = {}
    for raw in (db._writer, db._reader):  # the connections it has opened
        if raw is None:
            continue
        try:
            rows = raw.execute("SELECT sql, reprep FROM sqlite_stmt WHERE reprep > 0").fetchall()
        except sqlite3.OperationalError:
            pytest.skip("this SQLite is built without the sqlite_stmt table")
        found.update(rows)
    return found


async def test_no_statement_of_a_shoppers_trip_is_prepared_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, admin_email=ADMIN["email"], admin_password=ADMIN["password"])
    async with running(all_services(), settings) as (system, http):

        async def bearer(who: dict[str, str]) -> dict[str, str]:
            body = {"email": who["email"], "password": who["password"]}
            answer = await http.post("/api/v1/auth/login", json=body)
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['accessToken']}"}

        admin = await bearer(ADMIN)
        made = []
        for name in ("Espresso cup", "Tea mug", "Milk jug"):
            body = {"name": name, "price": 4, "quantity": 100}
            answer = await http.post("/api/v1/products", json=body, headers=admin)
            assert answer.status_code == 201, answer.text
            made.append(answer.json()["productId"])
        assert (await http.post("/api/v1/auth/register", json=SHOPPER)).status_code == 201
        ada = await bearer(SHOPPER)

        for word, product in zip(("cup", "mug", "jug"), made, strict=True):  # as the bench shops
            found = await http.get("/api/v1/products", params={"q": word, "pageSize": 10})
            assert [p["productId"] for p in found.json()["items"]] == [product]
            assert (await http.get(f"/api/v1/products/{product}")).status_code == 200
            item = {"productId": product, "quantity": 1}
            assert (await http.post("/api/v1/cart/items", json=item, headers=ada)).is_success
            body = {"payment": PAYMENT, "shippingAddress": ADDRESS}
            placed = await http.post("/api/v1/cart/checkout", json=body, headers=ada)
            assert placed.status_code == 202, placed.text
            url = f"/api/v1/orders/{placed.json()['orderId']}/wait"
            waited = await http.get(url, params={"until": "RESERVED", "timeout": 10}, headers=ada)
            assert waited.json()["outcome"] == "reached", waited.text

        again = {}
        for name, host in system.hosts.items():
            db = host.ctx.db if host.ctx is not None else None
            if isinstance(db, SqliteDatabase) and (found_again := reprepared(db)):
                again[name] = found_again
        assert again == {}
