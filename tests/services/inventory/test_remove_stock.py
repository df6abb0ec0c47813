"""inventory's admin bulk and WDM calls over its gRPC port: RemoveStock (conditional,
idempotent per key) and SetStocks (bulk set-up); the admin's token is signed by a test key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import grpc.aio
import pytest

from mercato.api.inventory.v1 import inventory_pb2 as pb
from mercato.api.inventory.v1.inventory_pb2_grpc import InventoryStub
from mercato.contracts.events import ProductCreated, ProductDeleted
from mercato.platform.auth import JwksCache, TokenVerifier, install_verifier
from mercato.platform.signing import SigningKey, static_jwks
from mercato.services.inventory import handlers as h
from tests.services.inventory.shop import Inventory, inventory

Metadata = list[tuple[str, str]]


async def started(tmp_path: Path, **overrides: str) -> AsyncIterator[tuple[Inventory, Metadata]]:
    async with inventory(tmp_path, **overrides) as inv:
        key = SigningKey.generate()
        install_verifier(inv.ctx, TokenVerifier(JwksCache(static_jwks(key))))
        admin = [("authorization", f"Bearer {key.issue('a', ['admin'], timedelta(minutes=5))}")]
        for product_id, quantity in (("p", 5), ("gone", 3)):
            created = ProductCreated(
                productId=product_id, name="x", price=Decimal(1), quantity=quantity
            )
            await inv.feed(h.stock_product, created)
        await inv.feed(h.retire_product, ProductDeleted(productId="gone"))
        yield inv, admin


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[Inventory, Metadata]]:
    async for found in started(tmp_path):
        yield found


def stub(inv: Inventory) -> InventoryStub:
    return InventoryStub(inv.ctx.channel("inventory"))  # type: ignore[no-untyped-call]


async def remove(inv: Inventory, metadata: Metadata, product_id: str, quantity: int) -> pb.Stock:
    request = pb.RemoveStockRequest(product_id=product_id, quantity=quantity)
    reply: pb.Stock = await stub(inv).RemoveStock(request, metadata=metadata, timeout=5)
    return reply


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


async def test_remove_takes_only_what_is_there_and_announces_it(
    rig: tuple[Inventory, Metadata],
) -> None:
    inv, admin = rig
    assert (await remove(inv, admin, "p", 2)).available == 3
    assert (await inv.events("StockUpdated"))[-1].data == {"productId": "p", "quantity": 3}
    assert await code_of(remove(inv, admin, "p", 4)) == grpc.StatusCode.FAILED_PRECONDITION
    assert await code_of(remove(inv, admin, "gone", 1)) == grpc.StatusCode.FAILED_PRECONDITION
    assert await code_of(remove(inv, admin, "nope", 1)) == grpc.StatusCode.NOT_FOUND
    for bad in (0, -1, 1_000_000_001):
        assert await code_of(remove(inv, admin, "p", bad)) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code_of(remove(inv, [], "p", 1)) == grpc.StatusCode.UNAUTHENTICATED
    assert (await remove(inv, admin, "p", 3)).available == 0
    assert (await inv.events())[-1].type == "OutOfStock"
    assert (await inv.stock("p")).available == 0


async def test_remove_with_the_same_key_is_taken_once(rig: tuple[Inventory, Metadata]) -> None:
    inv, admin = rig
    keyed = [*admin, ("idempotency-key", "k1")]
    first = await remove(inv, keyed, "p", 2)
    assert await remove(inv, keyed, "p", 2) == first
    assert (await inv.stock("p")).available == 3


async def race(inv: Inventory, admin: Metadata) -> None:
    outcomes = await asyncio.gather(
        *(remove(inv, admin, "p", 1) for _ in range(20)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(refused) == 15
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert (await inv.stock("p")).available == 0


async def test_concurrent_removals_never_go_below_zero(rig: tuple[Inventory, Metadata]) -> None:
    await race(*rig)


async def test_concurrent_removals_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    async for inv, admin in started(tmp_path, database_url=postgres_template):
        await race(inv, admin)


async def set_up(inv: Inventory, admin: Metadata) -> None:
    request = pb.SetStocksRequest(product_ids=["p", "q", "gone", "q"], quantity=7)
    reply = await stub(inv).SetStocks(request, metadata=admin, timeout=5)
    assert reply.count == 3
    for product_id in ("p", "q", "gone"):
        found = await inv.stock(product_id)
        assert (found.available, found.retired) == (7, False)
    # The product's own creation, arriving after, changes nothing.
    late = ProductCreated(productId="q", name="x", price=Decimal(1), quantity=99)
    await inv.feed(h.stock_product, late)
    assert (await inv.stock("q")).available == 7
    told = {e.subject: e.data["quantity"] for e in await inv.events("StockUpdated")}
    assert told["q"] == 7


async def test_set_stocks_makes_or_resets_each(rig: tuple[Inventory, Metadata]) -> None:
    inv, admin = rig
    await set_up(inv, admin)
    for request in (
        pb.SetStocksRequest(product_ids=[], quantity=1),
        pb.SetStocksRequest(product_ids=[str(i) for i in range(1001)], quantity=1),
        pb.SetStocksRequest(product_ids=["p", ""], quantity=1),
        pb.SetStocksRequest(product_ids=["x" * 65], quantity=1),
        pb.SetStocksRequest(product_ids=["p"], quantity=-1),
    ):
        call = stub(inv).SetStocks(request, metadata=admin, timeout=5)
        assert await code_of(call) == grpc.StatusCode.INVALID_ARGUMENT
    unsigned = stub(inv).SetStocks(pb.SetStocksRequest(product_ids=["p"], quantity=1), timeout=5)
    assert await code_of(unsigned) == grpc.StatusCode.UNAUTHENTICATED
    assert (await inv.stock("p")).available == 7


async def test_set_stocks_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    async for inv, admin in started(tmp_path, database_url=postgres_template):
        await set_up(inv, admin)
