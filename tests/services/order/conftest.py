"""order running embedded with identity (for tokens), fed events as the participants would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc.aio
import pytest
from sqlalchemy import select

from mercato.api.identity.v1 import identity_pb2
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.api.order.v1.order_pb2_grpc import OrdersStub
from mercato.contracts.events import REGISTRY, Payload
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.storage.tables import outbox
from mercato.services.identity.service import service as identity
from mercato.services.order.pricing import Priced, UnknownProduct, install_prices
from mercato.services.order.service import service as order
from tests.support import test_settings as make_settings

ADMIN = ("root@shop.example", "admin-pass-42")
PASSWORD = "correct horse 9"
CATALOG = {"p-1": Decimal("10.00"), "p-2": Decimal("5.25"), "p-3": Decimal("99.99")}


class FixedPrices:
    """The catalog's twin: a fixed price list."""

    async def price(self, items: Sequence[tuple[str, int]]) -> Priced:
        for product_id, _ in items:
            if product_id not in CATALOG:
                raise UnknownProduct(f"no product {product_id}")
        return Priced([(p, q, CATALOG[p]) for p, q in items], "USD")


def envelope_of(payload: Payload, source: str | None = None) -> Envelope:
    """The event as its service (or ``source``) would publish it."""
    kind = type(payload).__name__
    return Envelope(
        type=kind,
        source=f"mercato/{source or REGISTRY[kind].publisher}",
        data=payload.dump(),
        subject=getattr(payload, "orderId", None),
    )


@dataclass
class Shop:
    system: System
    orders: Any  # OrdersStub
    identity: Any  # IdentityStub

    @property
    def ctx(self) -> Any:
        ctx = self.system.hosts["order"].ctx
        assert ctx is not None
        return ctx

    async def sign_in(self, email: str, password: str = PASSWORD) -> list[tuple[str, str]]:
        tokens = await self.identity.Login(
            identity_pb2.LoginRequest(email=email, password=password)
        )
        return [("authorization", f"Bearer {tokens.access_token}")]

    async def customer(self, email: str) -> tuple[str, list[tuple[str, str]]]:
        """A new customer account: its id and call metadata with its token."""
        reply = await self.identity.Register(
            identity_pb2.RegisterRequest(email=email, password=PASSWORD, name=email.split("@")[0])
        )
        return reply.user_id, await self.sign_in(email)

    async def tell(self, payload: Payload, source: str | None = None) -> Envelope:
        """Publish an event as its service would; returns once order has handled it."""
        envelope = envelope_of(payload, source)
        assert await self.system.bus.publish([(topic_of(envelope), envelope)]) == [True]
        return envelope

    async def published(self, kind: str | None = None, order_id: str | None = None) -> list[Any]:
        """What order has written to its outbox, as payload models, oldest first."""
        async with self.ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = []
        for row in rows:
            envelope = Envelope.from_json(row.envelope)
            if kind is not None and envelope.type != kind:
                continue
            if order_id is not None and envelope.subject != order_id:
                continue
            found.append(REGISTRY[envelope.type].model.model_validate(envelope.data))
        return found


async def start_shop(data_dir: Path, **overrides: Any) -> AsyncIterator[Shop]:
    settings = make_settings(data_dir, admin_email=ADMIN[0], admin_password=ADMIN[1], **overrides)
    system = System([identity, order], settings)
    async with system.running():
        install_prices(system.hosts["order"].ctx, FixedPrices())  # type: ignore[arg-type]
        async with (
            grpc.aio.insecure_channel(system.grpc_targets["order"]) as order_channel,
            grpc.aio.insecure_channel(system.grpc_targets["identity"]) as identity_channel,
        ):
            yield Shop(
                system,
                OrdersStub(order_channel),  # type: ignore[no-untyped-call]
                IdentityStub(identity_channel),  # type: ignore[no-untyped-call]
            )


@pytest.fixture
async def shop(tmp_path: Path) -> AsyncIterator[Shop]:
    async for running in start_shop(tmp_path):
        yield running
