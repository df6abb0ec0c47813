"""cart alone (in-process bus, SQLite), driven over its real gRPC port.

The catalog in front of it is a small fake speaking the real catalog gRPC API (its twin for
these tests); tokens are signed by a test key, as identity would sign them. Events from the
catalog are fed through the bus, and what cart publishes is read from its outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy import select

from mercato.api.cart.v1 import cart_pb2 as pb
from mercato.api.cart.v1.cart_pb2_grpc import CartStub
from mercato.api.catalog.v1 import catalog_pb2 as cpb
from mercato.api.catalog.v1 import catalog_pb2_grpc
from mercato.api.common.v1.common_pb2 import Money
from mercato.contracts.events import Payload
from mercato.platform.auth import JwksCache, TokenVerifier, install_verifier
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.signing import SigningKey, static_jwks
from mercato.platform.storage.tables import outbox
from mercato.services.cart.service import service as cart
from tests.support import test_settings as make_settings


@dataclass
class Product:
    name: str
    price: str
    currency: str = "USD"
    state: str = "active"  # active | deleted
    as_of: datetime = field(default_factory=lambda: datetime.now(UTC))


class FakeCatalog(catalog_pb2_grpc.CatalogServicer):
    """ValidateItems as the catalog answers it, over a dict of products."""

    def __init__(self) -> None:
        self.products: dict[str, Product] = {}
        self.down = False
        self.calls = 0

    async def ValidateItems(
        self, request: cpb.ValidateItemsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> cpb.ValidateItemsReply:
        self.calls += 1
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "catalog down")
        items = []
        for item in request.items:
            if not 1 <= item.quantity <= 10_000:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad quantity")
            p = self.products.get(item.product_id)
            if p is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no product {item.product_id}")
            assert p is not None  # abort raised
            if p.state != "active":
                await context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"product {item.product_id} is no longer sold",
                )
            items.append(
                cpb.ValidatedItem(
                    product_id=item.product_id,
                    name=p.name,
                    quantity=item.quantity,
                    price=Money(amount=p.price, currency=p.currency),
                    price_as_of=p.as_of.isoformat(),
                )
            )
        return cpb.ValidateItemsReply(items=items)


@dataclass
class CartRig:
    system: System
    stub: CartStub
    catalog: FakeCatalog
    key: SigningKey

    def token(self, user_id: str, roles: tuple[str, ...] = ("customer",)) -> list[tuple[str, str]]:
        token = self.key.issue(user_id, list(roles), timedelta(minutes=5))
        return [("authorization", f"Bearer {token}")]

    async def events(self, event_type: str | None = None) -> list[Envelope]:
        ctx = self.system.hosts["cart"].ctx
        assert ctx is not None
        async with ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = [Envelope.from_json(r.envelope) for r in rows]
        return [e for e in found if event_type is None or e.type == event_type]

    async def feed(self, payload: Payload, *, time: datetime | None = None) -> None:
        """Deliver a catalog event to cart; returns once cart has committed it."""
        envelope = Envelope(
            type=type(payload).__name__,
            source="mercato/catalog",
            data=payload.dump(),
            subject=getattr(payload, "productId", None),
            time=time or datetime.now(UTC),
        )
        assert await self.system.bus.publish([(topic_of(envelope), envelope)]) == [True]

    async def add(self, user: str, product_id: str, quantity: int = 1, **kw: Any) -> pb.CartView:
        request = pb.AddItemRequest(product_id=product_id, quantity=quantity)
        reply: pb.CartView = await self.stub.AddItem(request, metadata=self.token(user), **kw)
        return reply

    async def view(self, user: str) -> pb.CartView:
        reply: pb.CartView = await self.stub.GetCart(pb.GetCartRequest(), metadata=self.token(user))
        return reply


async def start_cart(tmp_path: Path, **overrides: Any) -> AsyncIterator[CartRig]:
    catalog = FakeCatalog()
    server = grpc.aio.server()
    catalog_pb2_grpc.add_CatalogServicer_to_server(catalog, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = make_settings(tmp_path, grpc_targets=f"catalog=127.0.0.1:{port}", **overrides)
    system = System([cart], settings)
    key = SigningKey.generate()
    try:
        async with system.running():
            ctx = system.hosts["cart"].ctx
            assert ctx is not None
            install_verifier(ctx, TokenVerifier(JwksCache(static_jwks(key))))
            async with grpc.aio.insecure_channel(system.grpc_targets["cart"]) as channel:
                yield CartRig(system, CartStub(channel), catalog, key)  # type: ignore[no-untyped-call]
    finally:
        await server.stop(None)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[CartRig]:
    async for running in start_cart(tmp_path):
        yield running
