"""The in-app inbox: a user's notifications, newest first, and marking one read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update

from mercato.platform.storage.sql import Connection
from mercato.services.notification.tables import notifications

n = notifications.c


async def page_of(
    conn: Connection, user_id: str, page: int, page_size: int, unread_only: bool = False
) -> tuple[list[Any], int]:
    """One page of the user's notifications and how many there are in all."""
    where = [n.user_id == user_id]
    if unread_only:
        where.append(n.read_at.is_(None))
    total = await conn.scalar(select(func.count()).select_from(notifications).where(*where))
    rows = await conn.execute(
        select(n.id, n.kind, n.subject, n.text, n.html, n.created_at, n.read_at, n.user_id)
        .where(*where)
        .order_by(n.created_at.desc(), n.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return list(rows.all()), int(total or 0)


async def mark_read(conn: Connection, notification_id: str, user_id: str, now: datetime) -> bool:
    """False if the user has no such notification. Read already: kept as first read."""
    mine = (n.id == notification_id) & (n.user_id == user_id)
    await conn.execute(update(notifications).where(mine, n.read_at.is_(None)).values(read_at=now))
    found = await conn.scalar(select(n.id).where(mine))
    return found is not None
