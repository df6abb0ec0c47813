"""payment alone (in-process bus, SQLite), over its real gRPC port; tokens signed by a test key.

Order events are fed through the bus; what payment publishes is read from its outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc.aio
import pytest
from sqlalchemy import select

from mercato.api.common.v1.common_pb2 import Money
from mercato.api.payment.v1 import payment_pb2 as pb
from mercato.api.payment.v1.payment_pb2_grpc import PaymentStub
from mercato.contracts.events import OrderCreated, Payload, PaymentMethod, PricedItem
from mercato.platform.auth import JwksCache, TokenVerifier, install_verifier
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.runtime.system import System
from mercato.platform.signing import SigningKey, static_jwks
from mercato.platform.storage.tables import outbox
from mercato.services.payment.service import service as payment
from tests.support import test_settings as make_settings


def order(
    order_id: str, user: str, total: str, method: str | None = "card", token: str | None = None
) -> OrderCreated:
    return OrderCreated(
        orderId=order_id,
        userId=user,
        items=[PricedItem(productId="p1", quantity=1, price=Decimal(total))],
        totalAmount=Decimal(total),
        status="CREATED",
        payment=PaymentMethod(method=method, token=token) if method else None,  # type: ignore[arg-type]
    )


@dataclass
class PaymentRig:
    system: System
    stub: PaymentStub
    key: SigningKey

    @property
    def ctx(self) -> ServiceContext:
        ctx = self.system.hosts["payment"].ctx
        assert ctx is not None
        return ctx

    def token(self, user_id: str, roles: tuple[str, ...] = ("customer",)) -> list[tuple[str, str]]:
        token = self.key.issue(user_id, list(roles), timedelta(minutes=5))
        return [("authorization", f"Bearer {token}")]

    async def events(self, event_type: str | None = None) -> list[Envelope]:
        async with self.ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = [Envelope.from_json(r.envelope) for r in rows]
        return [e for e in found if event_type is None or e.type == event_type]

    def envelope(self, payload: Payload) -> Envelope:
        return Envelope(
            type=type(payload).__name__,
            source="mercato/order",
            data=payload.dump(),
            subject=getattr(payload, "orderId", None),
            time=datetime.now(UTC),
        )

    async def feed(self, payload: Payload | Envelope) -> Envelope:
        envelope = payload if isinstance(payload, Envelope) else self.envelope(payload)
        assert await self.system.bus.publish([(topic_of(envelope), envelope)]) == [True]
        return envelope

    async def tokenize(self, user: str, number: str) -> str:
        request = pb.TokenizeCardRequest(
            card_number=number, expiry="12/39", cvc="123", holder="Ada Lovelace"
        )
        reply: pb.CardToken = await self.stub.TokenizeCard(request, metadata=self.token(user))
        return reply.token

    async def top_up(self, user: str, amount: str) -> pb.WalletView:
        request = pb.TopUpWalletRequest(user_id=user, amount=Money(amount=amount))
        reply: pb.WalletView = await self.stub.TopUpWallet(
            request, metadata=self.token("admin-1", ("admin",))
        )
        return reply


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[PaymentRig]:
    system = System([payment], make_settings(tmp_path))
    key = SigningKey.generate()
    async with system.running():
        ctx = system.hosts["payment"].ctx
        assert ctx is not None
        install_verifier(ctx, TokenVerifier(JwksCache(static_jwks(key))))
        async with grpc.aio.insecure_channel(system.grpc_targets["payment"]) as channel:
            yield PaymentRig(system, PaymentStub(channel), key)  # type: ignore[no-untyped-call]


@pytest.fixture
async def pg_rig(tmp_path: Path, postgres_template: str) -> AsyncIterator[PaymentRig]:
    system = System([payment], make_settings(tmp_path, database_url=postgres_template))
    key = SigningKey.generate()
    async with system.running():
        ctx = system.hosts["payment"].ctx
        assert ctx is not None
        install_verifier(ctx, TokenVerifier(JwksCache(static_jwks(key))))
        async with grpc.aio.insecure_channel(system.grpc_targets["payment"]) as channel:
            yield PaymentRig(system, PaymentStub(channel), key)  # type: ignore[no-untyped-call]
