"""The WDM compatibility API, payment and stock halves (``/payment/*``, ``/stock/*``; see
``gateway/wdm.py``).

A WDM user is a Mercato user (identity, no password: it cannot log in) with a wallet in payment;
credit is the wallet's balance. A WDM item is a catalog product (the price) with its stock in
inventory. Amounts in paths are whole numbers, as WDM clients send them; bad ones are a 400,
unknown ids a 404, a refused payment or subtraction (not enough credit or stock) a 400.

Inventory learns of a new product from catalog's ProductCreated, later. So that ``find`` right
after ``create`` (or ``batch_init``) answers, the routes that make items set their stock in
inventory directly (``SetStocks``) and only then make the products (``PutProducts``): the
ProductCreated that follows finds the stock there and changes nothing, and it cannot race the
set-up for the same rows (on PostgreSQL, a bulk upsert racing inventory's own inserts of the
same rows in another order can deadlock). ``batch_init`` is a few bulk calls per thousand
entities, and may be run again: it resets the users' credit and the items' price and stock.
"""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import PlainTextResponse

from mercato.api.catalog.v1 import catalog_pb2
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.api.common.v1.common_pb2 import Money
from mercato.api.identity.v1 import identity_pb2
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.api.inventory.v1 import inventory_pb2
from mercato.api.inventory.v1.inventory_pb2_grpc import InventoryStub
from mercato.api.payment.v1 import payment_pb2
from mercato.api.payment.v1.payment_pb2_grpc import PaymentStub
from mercato.platform.ids import new_id
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.wdm import Wdm, WdmUpstream, wdm_id

router = APIRouter(tags=["wdm"], responses=PROBLEM_RESPONSES)

BULK = 1000  # entities per bulk call (what identity, payment, catalog and inventory take)
BULK_DEADLINE = 60.0  # seconds one bulk call may take
MAX_BATCH = 100_000
MAX_CREDIT = 10_000_000_000  # one amount of money: what payment moves in one call
MAX_STOCK = 1_000_000_000  # one quantity of stock (inventory's limit)
MAX_PRICE = 999_999_999  # catalog's limit
_WHOLE = re.compile(r"^[0-9]{1,12}$")

Raw = Annotated[str, Path(min_length=1, max_length=200)]


def _whole(raw: str, what: str, low: int, high: int) -> int:
    """A whole number from a path, or a 400 saying what it should have been."""
    if not _WHOLE.fullmatch(raw) or not low <= int(raw) <= high:
        raise Problem(400, f"{what} must be a whole number from {low} to {high}")
    return int(raw)


def _number(amount: str) -> int | float:
    """Money as WDM clients read it: an int when whole."""
    value = Decimal(amount or "0")
    return int(value) if value == value.to_integral_value() else float(value)


def _usd(amount: int) -> Money:
    return Money(amount=str(amount), currency="USD")


async def _call(
    wdm: WdmUpstream,
    service: str,
    stub: type[Any],
    method: str,
    message: Any,
    timeout: float | None = None,
) -> Any:
    """``wdm.call`` with WDM's statuses: a refused or invalid request is a 400, not a 422."""
    try:
        return await wdm.call(service, stub, method, message, timeout=timeout)
    except Problem as problem:
        if problem.status == 422:
            raise Problem(400, problem.detail) from None
        raise


# -- payment -------------------------------------------------------------------------------
async def _open_accounts(wdm: WdmUpstream, user_ids: list[str], credit: int) -> None:
    """Users (no password) with a wallet holding exactly ``credit`` each, a thousand a call."""
    for start in range(0, len(user_ids), BULK):
        chunk = user_ids[start : start + BULK]
        users = identity_pb2.CreateUsersRequest(
            users=[
                identity_pb2.NewUser(user_id=u, email=f"{u}@wdm.invalid", name="WDM user")
                for u in chunk
            ]
        )
        wallets = payment_pb2.SetUpWalletsRequest(user_ids=chunk, balance=_usd(credit))
        await asyncio.gather(
            _call(wdm, "identity", IdentityStub, "CreateUsers", users, timeout=BULK_DEADLINE),
            _call(wdm, "payment", PaymentStub, "SetUpWallets", wallets, timeout=BULK_DEADLINE),
        )


@router.post("/payment/create_user", summary="WDM: a new user with an empty wallet")
async def create_user(wdm: Wdm) -> dict[str, str]:
    user_id = new_id()
    await _open_accounts(wdm, [user_id], 0)
    return {"user_id": user_id}


@router.get("/payment/find_user/{user_id}", summary="WDM: a user's credit")
async def find_user(user_id: Raw, wdm: Wdm) -> dict[str, Any]:
    request = payment_pb2.GetWalletRequest(user_id=wdm_id("user", user_id))
    wallet = await _call(wdm, "payment", PaymentStub, "GetWallet", request)
    if not wallet.exists:
        raise Problem(404, f"no user {user_id}")
    return {"user_id": user_id, "credit": _number(wallet.balance.amount)}


@router.post("/payment/add_funds/{user_id}/{amount}", summary="WDM: add credit")
async def add_funds(user_id: Raw, amount: str, wdm: Wdm) -> PlainTextResponse:
    request = payment_pb2.TopUpWalletRequest(
        user_id=wdm_id("user", user_id),
        amount=_usd(_whole(amount, "amount", 1, MAX_CREDIT)),
        existing_only=True,
    )
    wallet = await _call(wdm, "payment", PaymentStub, "TopUpWallet", request)
    credit = _number(wallet.balance.amount)
    return PlainTextResponse(f"User: {user_id} credit updated to: {credit}")


@router.post("/payment/pay/{user_id}/{amount}", summary="WDM: take credit if there is enough")
async def pay(user_id: Raw, amount: str, wdm: Wdm) -> PlainTextResponse:
    request = payment_pb2.DebitWalletRequest(
        user_id=wdm_id("user", user_id), amount=_usd(_whole(amount, "amount", 1, MAX_CREDIT))
    )
    wallet = await _call(wdm, "payment", PaymentStub, "DebitWallet", request)
    credit = _number(wallet.balance.amount)
    return PlainTextResponse(f"User: {user_id} credit updated to: {credit}")


@router.post(
    "/payment/batch_init/{n}/{starting_money}",
    summary="WDM: users 0..n-1, each with a wallet holding starting_money",
)
async def batch_init_users(n: str, starting_money: str, wdm: Wdm) -> dict[str, str]:
    count = _whole(n, "n", 0, MAX_BATCH)
    credit = _whole(starting_money, "starting_money", 0, MAX_CREDIT)
    await _open_accounts(wdm, [wdm_id("user", str(i)) for i in range(count)], credit)
    return {"msg": "Batch init for users successful"}


# -- stock ---------------------------------------------------------------------------------
async def _make_items(wdm: WdmUpstream, named: dict[str, str], stock: int, price: int) -> None:
    """Items (id → name), each with ``stock`` at ``price``, a thousand a call: their stock in
    inventory first, then the catalog products (see the module's docstring)."""
    ids = list(named)
    for start in range(0, len(ids), BULK):
        chunk = ids[start : start + BULK]
        stocks = inventory_pb2.SetStocksRequest(product_ids=chunk, quantity=stock)
        await _call(wdm, "inventory", InventoryStub, "SetStocks", stocks, timeout=BULK_DEADLINE)
        products = catalog_pb2.PutProductsRequest(
            products=[
                catalog_pb2.PutProduct(
                    product_id=item_id, name=named[item_id], price=_usd(price), quantity=stock
                )
                for item_id in chunk
            ]
        )
        await _call(wdm, "catalog", CatalogStub, "PutProducts", products, timeout=BULK_DEADLINE)


@router.post("/stock/item/create/{price}", summary="WDM: a new item at that price, no stock")
async def create_item(price: str, wdm: Wdm) -> dict[str, str]:
    item_id = new_id()
    await _make_items(wdm, {item_id: "WDM item"}, 0, _whole(price, "price", 0, MAX_PRICE))
    return {"item_id": item_id}


@router.get("/stock/find/{item_id}", summary="WDM: an item's stock and price")
async def find_item(item_id: Raw, wdm: Wdm) -> dict[str, Any]:
    product_id = wdm_id("item", item_id)
    # ValidateItems, not GetProduct: a price without a ProductViewed event for every look.
    priced = catalog_pb2.ValidateItemsRequest(
        items=[catalog_pb2.ItemRequest(product_id=product_id, quantity=1)]
    )
    stocked = inventory_pb2.GetStockRequest(product_id=product_id)
    try:
        prices, stock = await asyncio.gather(
            _call(wdm, "catalog", CatalogStub, "ValidateItems", priced),
            _call(wdm, "inventory", InventoryStub, "GetStock", stocked),
        )
    except Problem as problem:
        if problem.status == 400:  # deleted or inactive: no longer an item
            raise Problem(404, f"no item {item_id}") from None
        raise
    return {"stock": stock.available, "price": _number(prices.items[0].price.amount)}


@router.post("/stock/add/{item_id}/{amount}", summary="WDM: add stock")
async def add_stock(item_id: Raw, amount: str, wdm: Wdm) -> PlainTextResponse:
    return await _move_stock(wdm, "Restock", inventory_pb2.RestockRequest, item_id, amount)


@router.post("/stock/subtract/{item_id}/{amount}", summary="WDM: take stock if there is enough")
async def subtract_stock(item_id: Raw, amount: str, wdm: Wdm) -> PlainTextResponse:
    return await _move_stock(wdm, "RemoveStock", inventory_pb2.RemoveStockRequest, item_id, amount)


async def _move_stock(
    wdm: WdmUpstream, method: str, request_type: type[Any], item_id: str, amount: str
) -> PlainTextResponse:
    request = request_type(
        product_id=wdm_id("item", item_id), quantity=_whole(amount, "amount", 1, MAX_STOCK)
    )
    stock = await _call(wdm, "inventory", InventoryStub, method, request)
    return PlainTextResponse(f"Item: {item_id} stock updated to: {stock.available}")


@router.post(
    "/stock/batch_init/{n}/{starting_stock}/{item_price}",
    summary="WDM: items 0..n-1, each with starting_stock at item_price",
)
async def batch_init_items(
    n: str, starting_stock: str, item_price: str, wdm: Wdm
) -> dict[str, str]:
    count = _whole(n, "n", 0, MAX_BATCH)
    stock = _whole(starting_stock, "starting_stock", 0, MAX_STOCK)
    price = _whole(item_price, "item_price", 0, MAX_PRICE)
    named = {wdm_id("item", str(i)): f"WDM item {i}" for i in range(count)}
    await _make_items(wdm, named, stock, price)
    return {"msg": "Batch init for stock successful"}
