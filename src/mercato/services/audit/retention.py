"""Retention: events older than ``MERCATO_AUDIT_RETENTION`` (by their time) are pruned."""

from __future__ import annotations

from functools import partial

from mercato.platform.retention import prune_forever
from mercato.platform.runtime.service import ServiceContext
from mercato.services.audit import store


async def prune_expired(ctx: ServiceContext) -> None:
    await prune_forever("audit log", ctx.settings.audit_retention, partial(store.prune, ctx.db))
