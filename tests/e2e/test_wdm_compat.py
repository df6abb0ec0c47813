"""The WDM compatibility API's payment and stock halves end to end, embedded (every service,
in-process bus, SQLite, MERCATO_WDM_API on): users and their credit, items and their stock,
the races the benchmark's consistency test runs, bulk set-up, and a checkout through the other
half's ``/orders`` routes on what these routes made."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from mercato.services import all_services, load_service
from mercato.services.gateway.wdm import wdm_id
from tests.e2e.test_saga import ADMIN
from tests.support import running
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("wdm"),
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        wdm_api=True,
    )
    async with running(all_services(), settings) as (_, client):
        yield client


async def ok(http: httpx.AsyncClient, method: str, path: str) -> Any:
    answer = await http.request(method, path)
    assert answer.status_code == 200, (path, answer.text)
    return answer.json() if answer.headers["content-type"] == "application/json" else answer.text


async def status(http: httpx.AsyncClient, method: str, path: str) -> int:
    return (await http.request(method, path)).status_code


async def new_user(http: httpx.AsyncClient, credit: int = 0) -> str:
    user_id = str((await ok(http, "POST", "/payment/create_user"))["user_id"])
    if credit:
        await ok(http, "POST", f"/payment/add_funds/{user_id}/{credit}")
    return user_id


async def credit_of(http: httpx.AsyncClient, user_id: str) -> Any:
    found = await ok(http, "GET", f"/payment/find_user/{user_id}")
    assert found["user_id"] == user_id
    return found["credit"]


async def new_item(http: httpx.AsyncClient, price: int, stock: int = 0) -> str:
    item_id = str((await ok(http, "POST", f"/stock/item/create/{price}"))["item_id"])
    if stock:
        await ok(http, "POST", f"/stock/add/{item_id}/{stock}")
    return item_id


async def test_a_user_is_made_funded_and_paid_from(http: httpx.AsyncClient) -> None:
    user_id = await new_user(http)
    assert await credit_of(http, user_id) == 0
    added = await ok(http, "POST", f"/payment/add_funds/{user_id}/10")
    assert added == f"User: {user_id} credit updated to: 10"
    await ok(http, "POST", f"/payment/pay/{user_id}/3")
    assert await status(http, "POST", f"/payment/pay/{user_id}/8") == 400
    assert await credit_of(http, user_id) == 7
    # A WDM user is a Mercato user who cannot log in.
    login = {"email": f"{user_id}@wdm.invalid", "password": "anything 1"}
    assert (await http.post("/api/v1/auth/login", json=login)).status_code == 401


async def test_payment_refuses_bad_input_and_unknown_users(http: httpx.AsyncClient) -> None:
    user_id = await new_user(http, credit=5)
    for path in ("/payment/find_user/nobody", "/payment/find_user/424242"):
        assert await status(http, "GET", path) == 404
    for verb in ("add_funds", "pay"):
        assert await status(http, "POST", f"/payment/{verb}/nobody/1") == 404
        for amount in ("0", "-1", "abc", "1.5", "99999999999999999999", "10000000001"):
            assert await status(http, "POST", f"/payment/{verb}/{user_id}/{amount}") == 400
    assert await status(http, "GET", "/payment/find_user/nobody") == 404  # nothing was opened
    for path in (
        "/payment/batch_init/-1/5",
        "/payment/batch_init/100001/5",
        "/payment/batch_init/2/x",
    ):
        assert await status(http, "POST", path) == 400
    assert await credit_of(http, user_id) == 5


async def test_concurrent_payments_never_overdraw(http: httpx.AsyncClient) -> None:
    user_id = await new_user(http, credit=5)
    codes = await asyncio.gather(
        *(status(http, "POST", f"/payment/pay/{user_id}/1") for _ in range(20))
    )
    assert sorted(codes) == [200] * 5 + [400] * 15
    assert await credit_of(http, user_id) == 0


async def test_an_item_is_found_right_after_it_is_made(http: httpx.AsyncClient) -> None:
    item_id = await new_item(http, price=7)
    assert await ok(http, "GET", f"/stock/find/{item_id}") == {"stock": 0, "price": 7}
    added = await ok(http, "POST", f"/stock/add/{item_id}/5")
    assert added == f"Item: {item_id} stock updated to: 5"
    await ok(http, "POST", f"/stock/subtract/{item_id}/2")
    assert await status(http, "POST", f"/stock/subtract/{item_id}/4") == 400
    assert await ok(http, "GET", f"/stock/find/{item_id}") == {"stock": 3, "price": 7}
    product = await ok(http, "GET", f"/api/v1/products/{item_id}")  # a catalog product too
    assert product["price"] == 7


async def test_stock_refuses_bad_input_and_unknown_items(http: httpx.AsyncClient) -> None:
    item_id = await new_item(http, price=3, stock=2)
    assert await status(http, "GET", "/stock/find/nothing") == 404
    assert await status(http, "GET", "/stock/find/987654") == 404
    for verb in ("add", "subtract"):
        assert await status(http, "POST", f"/stock/{verb}/nothing/1") == 404
        for amount in ("0", "-1", "abc", "2.5", "1000000001"):
            assert await status(http, "POST", f"/stock/{verb}/{item_id}/{amount}") == 400
    for price in ("-1", "abc", "1000000000"):
        assert await status(http, "POST", f"/stock/item/create/{price}") == 400
    for path in ("/stock/batch_init/1/-1/1", "/stock/batch_init/1/1/x", "/stock/batch_init/x/1/1"):
        assert await status(http, "POST", path) == 400
    assert await ok(http, "GET", f"/stock/find/{item_id}") == {"stock": 2, "price": 3}


async def test_concurrent_subtractions_never_go_below_zero(http: httpx.AsyncClient) -> None:
    item_id = await new_item(http, price=1, stock=5)
    codes = await asyncio.gather(
        *(status(http, "POST", f"/stock/subtract/{item_id}/1") for _ in range(20))
    )
    assert sorted(codes) == [200] * 5 + [400] * 15
    assert (await ok(http, "GET", f"/stock/find/{item_id}"))["stock"] == 0


async def test_batch_init_users_then_find_the_first_and_last(http: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    made = await ok(http, "POST", "/payment/batch_init/1000/100")
    print(f"payment batch_init 1000: {time.perf_counter() - started:.2f}s")
    assert made == {"msg": "Batch init for users successful"}
    assert await credit_of(http, "0") == 100 and await credit_of(http, "999") == 100
    assert await status(http, "GET", "/payment/find_user/1000") == 404
    await ok(http, "POST", "/payment/pay/0/30")
    assert await credit_of(http, "0") == 70
    await ok(http, "POST", "/payment/batch_init/2/100")  # again: credit as it was set up
    assert await credit_of(http, "0") == 100
    assert await ok(http, "GET", f"/payment/find_user/{wdm_id('user', '0')}") == {
        "user_id": wdm_id("user", "0"),
        "credit": 100,
    }


async def test_batch_init_items_then_find_the_first_and_last(http: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    made = await ok(http, "POST", "/stock/batch_init/1000/50/7")
    print(f"stock batch_init 1000: {time.perf_counter() - started:.2f}s")
    assert made == {"msg": "Batch init for stock successful"}
    for number in ("0", "999"):
        assert await ok(http, "GET", f"/stock/find/{number}") == {"stock": 50, "price": 7}
    assert await status(http, "GET", "/stock/find/1000") == 404
    await ok(http, "POST", "/stock/subtract/0/10")
    await ok(http, "POST", "/stock/batch_init/2/50/8")  # again: stock and price reset
    await ok(http, "POST", "/stock/subtract/0/1")
    await asyncio.sleep(1)  # catalog's events for the set-up, arriving late, change nothing
    assert await ok(http, "GET", "/stock/find/0") == {"stock": 49, "price": 8}
    assert await ok(http, "GET", "/stock/find/999") == {"stock": 50, "price": 7}


async def test_a_wdm_checkout_pays_and_takes_stock_made_here(http: httpx.AsyncClient) -> None:
    user_id = await new_user(http, credit=50)
    item_id = await new_item(http, price=20, stock=3)
    order_id = (await ok(http, "POST", f"/orders/create/{user_id}"))["order_id"]
    await ok(http, "POST", f"/orders/addItem/{order_id}/{item_id}/2")
    await ok(http, "POST", f"/orders/checkout/{order_id}")
    assert await credit_of(http, user_id) == 10
    assert (await ok(http, "GET", f"/stock/find/{item_id}"))["stock"] == 1


async def test_the_routes_are_off_unless_asked_for(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, admin_email=ADMIN["email"], admin_password="whatever")
    async with running([load_service("payment")], settings) as (_, client):
        for method, path in (
            ("POST", "/payment/create_user"),
            ("GET", "/payment/find_user/0"),
            ("POST", "/payment/pay/0/1"),
            ("POST", "/payment/batch_init/1/1"),
            ("POST", "/stock/item/create/1"),
            ("GET", "/stock/find/0"),
            ("POST", "/stock/subtract/0/1"),
            ("POST", "/stock/batch_init/1/1/1"),
        ):
            assert await status(client, method, path) == 404, path


async def test_set_up_and_races_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    # On PostgreSQL writers really run at once: the set-up, run twice while inventory and
    # catalog still handle the first one's events, must neither deadlock nor undo anything.
    settings = make_settings(
        tmp_path,
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        wdm_api=True,
        database_url=postgres_template,
    )
    async with running(all_services(), settings) as (_, client):
        for _ in range(2):
            await ok(client, "POST", "/stock/batch_init/1000/5/3")
            await ok(client, "POST", "/payment/batch_init/1000/5")
        for kind, verb in (("stock", "subtract"), ("payment", "pay")):
            codes = await asyncio.gather(
                *(status(client, "POST", f"/{kind}/{verb}/999/1") for _ in range(12))
            )
            assert sorted(codes) == [200] * 5 + [400] * 7
        await asyncio.sleep(1)
        assert await ok(client, "GET", "/stock/find/999") == {"stock": 0, "price": 3}
        assert await credit_of(client, "999") == 0
