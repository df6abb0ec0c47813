"""An embedded inventory for tests: feed it events through its handlers, read what it keeps
and what it published."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mercato.contracts.events import OrderCreated, Payload, PricedItem
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.storage.tables import outbox
from mercato.services.inventory import store
from mercato.services.inventory.service import service
from tests.support import running
from tests.support import test_settings as make_settings


@dataclass
class Inventory:
    ctx: ServiceContext

    async def feed(self, handler: Callable[[Any, Any], Awaitable[None]], event: Payload) -> None:
        async with self.ctx.transaction() as uow:
            await handler(event, uow)

    async def stock(self, product_id: str) -> store.Stock:
        async with self.ctx.db.connect() as conn:
            found = await store.get_stock(conn, product_id)
        assert found is not None
        return found

    async def events(self, event_type: str | None = None) -> list[Envelope]:
        async with self.ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = [Envelope.from_json(r.envelope) for r in rows]
        return [e for e in found if event_type is None or e.type == event_type]


@asynccontextmanager
async def inventory(tmp_path: Path, **overrides: Any) -> AsyncIterator[Inventory]:
    settings = make_settings(tmp_path, **overrides)
    async with running([service], settings) as (system, _http):
        ctx = system.hosts["inventory"].ctx
        assert ctx is not None
        yield Inventory(ctx)


def order(order_id: str, *items: tuple[str, int]) -> OrderCreated:
    return OrderCreated(
        orderId=order_id,
        userId="u1",
        items=[PricedItem(productId=p, quantity=q, price=Decimal("1.00")) for p, q in items],
        totalAmount=Decimal(sum(q for _, q in items)),
        status="CREATED",
    )
