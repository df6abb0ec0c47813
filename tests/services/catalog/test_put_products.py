"""catalog's PutProducts: bulk set-up with chosen ids, made or reset, one event each (admin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy import select

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.api.common.v1.common_pb2 import Money
from mercato.platform.auth import JwksCache, TokenVerifier, install_verifier
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.signing import SigningKey, static_jwks
from mercato.platform.storage.tables import outbox
from mercato.services import load_service
from tests.support import running
from tests.support import test_settings as make_settings

Rig = tuple[ServiceContext, Any, list[tuple[str, str]]]


async def started(tmp_path: Path, **overrides: Any) -> AsyncIterator[Rig]:
    settings = make_settings(tmp_path, **overrides)
    async with running([load_service("catalog")], settings) as (system, _http):
        ctx = system.hosts["catalog"].ctx
        assert ctx is not None
        key = SigningKey.generate()
        install_verifier(ctx, TokenVerifier(JwksCache(static_jwks(key))))
        admin = [("authorization", f"Bearer {key.issue('a', ['admin'], timedelta(minutes=5))}")]
        yield ctx, CatalogStub(ctx.channel("catalog")), admin  # type: ignore[no-untyped-call]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for found in started(tmp_path):
        yield found


def put(*items: tuple[str, str, int]) -> pb.PutProductsRequest:
    return pb.PutProductsRequest(
        products=[
            pb.PutProduct(product_id=i, name=f"item {i}", price=Money(amount=price), quantity=q)
            for i, price, q in items
        ]
    )


async def events(ctx: ServiceContext) -> list[Envelope]:
    async with ctx.db.connect() as conn:
        rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
    return [Envelope.from_json(r.envelope) for r in rows]


async def put_makes_then_resets(rig: Rig) -> None:
    ctx, stub, admin = rig
    made = await stub.PutProducts(put(*((str(i), "10", 5) for i in range(1000))), metadata=admin)
    assert (made.created, made.updated) == (1000, 0)
    await stub.DeleteProduct(pb.DeleteProductRequest(product_id="7"), metadata=admin)
    changes = put(("7", "2.5", 1), ("999", "3", 0), ("new", "1", 4))
    again = await stub.PutProducts(changes, metadata=admin)
    assert (again.created, again.updated) == (1, 2)
    seven = await stub.GetProduct(pb.GetProductRequest(product_id="7"))
    assert (seven.name, Decimal(seven.price.amount), seven.active) == (
        "item 7",
        Decimal("2.5"),
        True,
    )
    assert seven.available == 5  # an existing product's stock is inventory's
    # A reset product (and a new one) is found by its name as a made one is.
    for words, expected in (("ITEM 999", "999"), ("item NEW", "new")):
        page = await stub.ListProducts(pb.ListProductsRequest(query=words))
        assert [p.product_id for p in page.products] == [expected], words
    found = await events(ctx)
    created = [e for e in found if e.type == "ProductCreated"]
    assert len(created) == 1001
    assert created[0].data["quantity"] == 5
    updated = {e.subject: e.data for e in found if e.type == "ProductUpdated"}
    assert "quantity" not in updated["999"] and updated["7"]["price"] == 2.5


async def test_put_makes_then_resets_products(rig: Rig) -> None:
    await put_makes_then_resets(rig)


async def test_put_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    async for rig in started(tmp_path, database_url=postgres_template):
        await put_makes_then_resets(rig)


async def test_a_bad_put_writes_nothing(rig: Rig) -> None:
    ctx, stub, admin = rig
    for bad in (
        pb.PutProductsRequest(),
        put(*((str(i), "1", 1) for i in range(1001))),
        put(("ok", "1", 1), ("", "1", 1)),
        put(("ok", "1", 1), ("x" * 65, "1", 1)),
        put(("ok", "-1", 1)),
        put(("ok", "abc", 1)),
        put(("ok", "1.001", 1)),
        put(("ok", "1", -1)),
        put(("ok", "1", 1_000_000_001)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PutProducts(bad, metadata=admin)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await events(ctx) == []
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.PutProducts(put(("ok", "1", 1)))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
