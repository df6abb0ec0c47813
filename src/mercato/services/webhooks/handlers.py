"""webhooks' one event handler: every event becomes a delivery for each active subscription
that asks for it.

The service consumes every event type of the contracts with one wildcard (as the audit log
does), not the union of what subscriptions ask for at the moment: a queue bound to that union
would have to be re-bound, on every replica, each time an admin changes a subscription, and an
event published between the change and the re-binding would be lost for the new subscription.
What consuming everything costs is kept small: before a batch's transaction, one read of the
active subscriptions (``subscribed``) tells which events any of them wants; the others are
acknowledged there, with no inbox row and no transaction. An event is matched against the
subscriptions active when it is handled: one created a moment after an event was handled does
not get it.

Ordering: the handler tolerates any order. It writes one delivery per (subscription, event),
unique, so a redelivered event adds nothing (and the inbox skips it first); the sending order
per subscription and subject is decided when sending, by the events' own times (``store.DUE``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mercato.platform.envelope import Envelope
from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Database
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.webhooks import store
from mercato.services.webhooks.domain import PENDING, wants

# The delivery worker of each database in this process, woken when a commit made deliveries.
WAKE: dict[int, Callable[[], None]] = {}


def waker(db: Database) -> Callable[[], None] | None:
    return WAKE.get(id(db))


async def subscribed(db: Database) -> Callable[[Envelope], bool]:
    """The inbox's ``interest``: whether an active subscription wants an event, as of now."""
    async with db.connect() as conn:
        active = await store.active_subscriptions(conn)
    return lambda e: any(wants(s.event_types, s.subject, e.type, e.subject) for s in active)


async def record_for_subscribers(events: Sequence[Envelope], uow: UnitOfWork) -> None:
    """A delivery for each active subscription that wants each event, due at once: one read
    of the subscriptions and one insert for the batch."""
    active = await store.active_subscriptions(uow.conn)
    now = store.now_utc()
    rows = [
        {
            "id": "msg_" + new_id(),
            "subscription_id": s.id,
            "event_id": event.id,
            "event_type": event.type,
            "subject": event.subject,
            "event_time": event.time,
            "body": event.to_json(),
            "status": PENDING,
            "attempt_count": 0,
            "next_attempt_at": now,
            "lease_until": None,
            "lease_owner": None,
            "last_error": None,
            "created_at": now,
            "delivered_at": None,
        }
        for event in events
        for s in active
        if wants(s.event_types, s.subject, event.type, event.subject)
    ]
    if not rows:
        return
    await store.add_deliveries(uow.conn, rows)
    wake = waker(uow.conn.db)
    if wake is not None:
        uow.after_commit(wake)
