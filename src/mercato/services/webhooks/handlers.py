"""webhooks' one event handler: every event becomes a delivery for each active subscription
that asks for it.

The service consumes every event type of the contracts (as an audit log would), not the union
of what subscriptions ask for at the moment: a queue bound to that union would have to be
re-bound, on every replica, each time an admin changes a subscription, and an event published
between the change and the re-binding would be lost for the new subscription. Consuming
everything costs one delivery per event to this service's queue; events no subscription wants
end here (an inbox row, no delivery).

Ordering: the handler tolerates any order. It writes one delivery per (subscription, event),
unique, so a redelivered event adds nothing (and the inbox skips it first); the sending order
per subscription and subject is decided when sending, by the events' own times (``store.DUE``).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

from mercato.contracts.events import Payload
from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Database
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.webhooks import store
from mercato.services.webhooks.domain import PENDING, wants

# The delivery worker of each database in this process, woken when a commit made deliveries.
WAKE: dict[int, Callable[[], None]] = {}


# The active subscriptions, read once per batch of events (``prefetch``), by unit of work.
_SUBSCRIBERS: weakref.WeakKeyDictionary[UnitOfWork, list[store.Subscription]] = (
    weakref.WeakKeyDictionary()
)


def waker(db: Database) -> Callable[[], None] | None:
    return WAKE.get(id(db))


async def read_subscriptions(uow: UnitOfWork, events: Sequence[Payload]) -> None:
    """The service's ``prefetch``: one read of the subscriptions for a whole batch."""
    _SUBSCRIBERS[uow] = await store.active_subscriptions(uow.conn)


async def record_for_subscribers(event: Payload, uow: UnitOfWork) -> None:
    """A delivery for each active subscription that wants this event, due at once."""
    envelope = uow.cause
    assert envelope is not None, "an event handler runs with its event as the cause"
    active = _SUBSCRIBERS.get(uow)
    if active is None:
        active = _SUBSCRIBERS[uow] = await store.active_subscriptions(uow.conn)
    subscribers = [
        s for s in active if wants(s.event_types, s.subject, envelope.type, envelope.subject)
    ]
    if not subscribers:
        return
    now = store.now_utc()
    body = envelope.to_json()
    await store.add_deliveries(
        uow.conn,
        [
            {
                "id": "msg_" + new_id(),
                "subscription_id": s.id,
                "event_id": envelope.id,
                "event_type": envelope.type,
                "subject": envelope.subject,
                "event_time": envelope.time,
                "body": body,
                "status": PENDING,
                "attempt_count": 0,
                "next_attempt_at": now,
                "lease_until": None,
                "lease_owner": None,
                "last_error": None,
                "created_at": now,
                "delivered_at": None,
            }
            for s in subscribers
        ],
    )
    wake = waker(uow.conn.db)
    if wake is not None:
        uow.after_commit(wake)
