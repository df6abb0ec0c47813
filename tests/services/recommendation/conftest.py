"""recommendation alone (in-process bus, SQLite), over its real gRPC port; tokens signed by a
test key. Events are fed through the bus, with the times they were published at."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc.aio
import pytest
from sqlalchemy import func, select

from mercato.api.recommendation.v1 import recommendation_pb2 as pb
from mercato.api.recommendation.v1.recommendation_pb2_grpc import RecommendationStub
from mercato.contracts.events import (
    Item,
    OrderCompleted,
    Payload,
    ProductCreated,
    ProductViewed,
)
from mercato.platform.auth import JwksCache, TokenVerifier, install_verifier
from mercato.platform.bus.port import topic_of
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.runtime.system import System
from mercato.platform.signing import SigningKey, static_jwks
from mercato.platform.storage.tables import inbox
from mercato.services.recommendation.service import service as recommendation
from tests.conftest import eventually
from tests.support import test_settings as make_settings


def product(product_id: str, category: str = "cups", price: str = "10") -> ProductCreated:
    return ProductCreated(
        productId=product_id,
        name=f"Product {product_id}",
        price=Decimal(price),
        quantity=5,
        category=category,
    )


def view(product_id: str, user: str | None = None, session: str | None = None) -> ProductViewed:
    return ProductViewed(productId=product_id, userId=user, sessionId=session)


def completed(order_id: str, *product_ids: str) -> OrderCompleted:
    return OrderCompleted(
        orderId=order_id,
        paymentId=f"pay-{order_id}",
        status="COMPLETED",
        userId="buyer",
        items=[Item(productId=p, quantity=1) for p in product_ids],
    )


@dataclass
class RecommendationRig:
    system: System
    stub: RecommendationStub
    key: SigningKey
    fed: int = 0

    @property
    def ctx(self) -> ServiceContext:
        ctx = self.system.hosts["recommendation"].ctx
        assert ctx is not None
        return ctx

    def token(self, user_id: str, roles: tuple[str, ...] = ("customer",)) -> list[tuple[str, str]]:
        token = self.key.issue(user_id, list(roles), timedelta(minutes=5))
        return [("authorization", f"Bearer {token}")]

    def envelope(self, payload: Payload, time: datetime | None = None) -> Envelope:
        return Envelope(
            type=type(payload).__name__,
            source="mercato/test",
            data=payload.dump(),
            subject=getattr(payload, "productId", None) or getattr(payload, "orderId", None),
            time=time or datetime.now(UTC),
        )

    async def feed(self, *payloads: Payload | Envelope) -> None:
        """Publish each and wait until the service has handled all it was fed."""
        for p in payloads:
            envelope = p if isinstance(p, Envelope) else self.envelope(p)
            assert await self.system.bus.publish([(topic_of(envelope), envelope)]) == [True]
            self.fed += 1
        await self.settled()

    async def settled(self) -> None:
        async def handled() -> bool:
            async with self.ctx.db.connect() as conn:
                count = await conn.scalar(select(func.count()).select_from(inbox))
            return int(count or 0) >= self.fed

        await eventually(handled, timeout=10)

    async def recommend(
        self,
        product_id: str = "",
        user_id: str = "",
        limit: int = 0,
        metadata: list[tuple[str, str]] | None = None,
    ) -> list[tuple[str, str]]:
        """(product id, reason), best first."""
        request = pb.RecommendRequest(product_id=product_id, user_id=user_id, limit=limit)
        reply = await self.stub.Recommend(request, metadata=metadata or [])
        scores = [r.score for r in reply.items]
        assert scores == sorted(scores, reverse=True), scores
        return [(r.product_id, r.reason) for r in reply.items]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[RecommendationRig]:
    system = System([recommendation], make_settings(tmp_path))
    key = SigningKey.generate()
    async with system.running():
        ctx = system.hosts["recommendation"].ctx
        assert ctx is not None
        install_verifier(ctx, TokenVerifier(JwksCache(static_jwks(key))))
        target = system.grpc_targets["recommendation"]
        async with grpc.aio.insecure_channel(target) as channel:
            yield RecommendationRig(system, RecommendationStub(channel), key)  # type: ignore[no-untyped-call]
