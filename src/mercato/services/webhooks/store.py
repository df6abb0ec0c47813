"""webhooks' storage: subscriptions, deliveries, attempts.

Every change that two replicas may make at once is one conditional statement: a delivery is
claimed by the UPDATE that finds it unleased (``claim``), an endpoint's failure count grows in
the UPDATE itself (``record``), so no read-then-write can interleave.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import aliased

from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection
from mercato.services.webhooks.domain import DEAD, DELIVERED, PENDING
from mercato.services.webhooks.tables import When, attempts, deliveries, subscriptions


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    url: str
    event_types: list[str]
    subject: str | None
    active: bool
    description: str
    secret: str
    previous_secret: str | None
    previous_secret_expires_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    paused_until: datetime | None
    created_at: datetime
    updated_at: datetime

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign now: the current one, and the old one during the overlap."""
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and expires > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


def _subscription(columns: Mapping[str, Any]) -> Subscription:
    values = dict(columns)
    values["event_types"] = json.loads(values["event_types"])
    return Subscription(**values)


async def add_subscription(
    conn: Connection,
    url: str,
    types: list[str],
    subject: str | None,
    active: bool,
    description: str,
    secret: str,
) -> Subscription:
    now = now_utc()
    values: dict[str, Any] = {
        "id": new_id(),
        "url": url,
        "event_types": json.dumps(types),
        "subject": subject,
        "active": active,
        "description": description,
        "secret": secret,
        "previous_secret": None,
        "previous_secret_expires_at": None,
        "consecutive_failures": 0,
        "failing_since": None,
        "paused_until": None,
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(insert(subscriptions), values)
    return _subscription(values)


async def subscription(conn: Connection, subscription_id: str) -> Subscription | None:
    row = (
        await conn.execute(select(subscriptions).where(subscriptions.c.id == subscription_id))
    ).first()
    return _subscription(row._mapping) if row is not None else None


async def page_of_subscriptions(
    conn: Connection, page: int, page_size: int
) -> tuple[list[Subscription], int]:
    total = await conn.scalar(select(func.count()).select_from(subscriptions))
    rows = (
        await conn.execute(
            select(subscriptions)
            .order_by(subscriptions.c.created_at, subscriptions.c.id)
            .limit(page_size)
            .offset((page - 1) * page_size)
        )
    ).all()
    return [_subscription(r._mapping) for r in rows], int(total or 0)


async def active_subscriptions(conn: Connection) -> list[Subscription]:
    rows = (await conn.execute(select(subscriptions).where(subscriptions.c.active))).all()
    return [_subscription(r._mapping) for r in rows]


async def change_subscription(conn: Connection, subscription_id: str, **changes: Any) -> bool:
    if "event_types" in changes:
        changes["event_types"] = json.dumps(changes["event_types"])
    changes["updated_at"] = now_utc()
    done = await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .values(**changes)
        .returning(subscriptions.c.id)
    )
    return done.first() is not None


async def remove_subscription(conn: Connection, subscription_id: str) -> bool:
    """The subscription, its deliveries and their attempts."""
    ids = select(deliveries.c.id).where(deliveries.c.subscription_id == subscription_id)
    await conn.execute(delete(attempts).where(attempts.c.delivery_id.in_(ids)))
    await conn.execute(delete(deliveries).where(deliveries.c.subscription_id == subscription_id))
    gone = await conn.execute(
        delete(subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .returning(subscriptions.c.id)
    )
    return gone.first() is not None


async def add_deliveries(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await conn.execute(insert(deliveries), list(rows))


# -- sending ------------------------------------------------------------------------------
_earlier = aliased(deliveries)

# The deliveries due now, oldest first, to endpoints neither inactive nor paused, and only the
# first of each subject: a delivery waits while an earlier event of its subscription and
# subject is still pending (in flight included, so one subject has one POST at a time across
# every replica). "Earlier" is the event's own time (then its id, a UUIDv7), not the order the
# rows were written in: two replicas consuming two events of one order may commit them in
# either order, so an event is not sent before it is ``settle`` seconds old (made before
# ``settled``): an earlier event that reached the database within that time goes out first.
# Events without a subject are not ordered.
_ELIGIBLE = (
    select(
        deliveries.c.id,
        deliveries.c.subscription_id,
        deliveries.c.next_attempt_at,
        func.row_number()
        .over(partition_by=deliveries.c.subscription_id, order_by=deliveries.c.next_attempt_at)
        .label("place"),
    )
    .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
    .where(
        deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at <= bindparam("now"),
        deliveries.c.event_time <= bindparam("settled"),
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("now")),
        subscriptions.c.active,
        or_(
            subscriptions.c.paused_until.is_(None), subscriptions.c.paused_until <= bindparam("now")
        ),
        ~exists().where(
            _earlier.c.subscription_id == deliveries.c.subscription_id,
            _earlier.c.subject == deliveries.c.subject,
            _earlier.c.status == PENDING,
            or_(
                _earlier.c.event_time < deliveries.c.event_time,
                and_(
                    _earlier.c.event_time == deliveries.c.event_time,
                    _earlier.c.event_id < deliveries.c.event_id,
                ),
            ),
        ),
    )
    .subquery()
)
# At most ``per_endpoint`` of each endpoint's: an endpoint with a long backlog cannot fill the
# page and keep the others' deliveries from being seen.
DUE = (
    select(_ELIGIBLE.c.id, _ELIGIBLE.c.subscription_id)
    .where(_ELIGIBLE.c.place <= bindparam("per_endpoint"))
    .order_by(_ELIGIBLE.c.next_attempt_at)
    .limit(bindparam("limit"))
)

# The claim: only the replica whose UPDATE still finds the delivery pending and unleased
# gets it back (RETURNING); the other finds no row and leaves it.
CLAIM = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("delivery_id"),
        deliveries.c.status == PENDING,
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("now")),
    )
    .values(lease_until=bindparam("until"), lease_owner=bindparam("owner"))
    .returning(deliveries.c.id)
)


async def due(
    conn: Connection, now: datetime, limit: int, per_endpoint: int, settle: float = 0.0
) -> list[tuple[str, str]]:
    """(delivery id, subscription id) of deliveries that may be sent now, oldest first, at
    most ``per_endpoint`` for one subscription."""
    params = {
        "now": now,
        "settled": now - timedelta(seconds=settle),
        "limit": limit,
        "per_endpoint": per_endpoint,
    }
    rows = (await conn.execute(DUE, params)).all()
    return [(r.id, r.subscription_id) for r in rows]


async def claim(
    conn: Connection, delivery_id: str, owner: str, now: datetime, lease: float
) -> bool:
    params = {
        "delivery_id": delivery_id,
        "now": now,
        "until": now + timedelta(seconds=lease),
        "owner": owner,
    }
    return (await conn.execute(CLAIM, params)).first() is not None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed delivery, with what its POST needs."""

    id: str
    body: str
    attempt_count: int
    subscription: Subscription


async def outgoing(conn: Connection, delivery_id: str) -> Outgoing | None:
    row = (
        await conn.execute(
            select(deliveries.c.id, deliveries.c.body, deliveries.c.attempt_count, subscriptions)
            .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
            .where(deliveries.c.id == delivery_id)
        )
    ).first()
    if row is None:
        return None
    values = dict(row._mapping)
    delivery = (values.pop("id"), values.pop("body"), values.pop("attempt_count"))
    # The join names the subscription's id "id_1".
    values["id"] = values.pop("id_1")
    return Outgoing(*delivery, subscription=_subscription(values))


@dataclass(frozen=True, slots=True)
class Outcome:
    at: datetime
    status_code: int | None
    latency_ms: int
    error: str | None
    excerpt: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def record(
    conn: Connection,
    sent: Outgoing,
    owner: str,
    outcome: Outcome,
    retry_in: float | None,
    breaker_failures: int,
    breaker_pause: float,
) -> None:
    """One attempt's outcome: its row, the delivery's next state, the endpoint's breaker.

    ``retry_in`` (seconds; None: no attempt left) is used only when the attempt failed.
    Nothing is written for a delivery deleted meanwhile (with its subscription)."""
    if not await conn.scalar(select(exists().where(deliveries.c.id == sent.id))):
        return
    await conn.execute(
        insert(attempts),
        {
            "id": new_id(),
            "delivery_id": sent.id,
            "at": outcome.at,
            "status_code": outcome.status_code,
            "latency_ms": outcome.latency_ms,
            "error": outcome.error,
            "response_excerpt": outcome.excerpt,
        },
    )
    now = outcome.at
    if outcome.ok:
        state: dict[str, Any] = {"status": DELIVERED, "delivered_at": now, "last_error": None}
    elif retry_in is None:
        state = {"status": DEAD, "last_error": outcome.error}
    else:
        state = {"next_attempt_at": now + timedelta(seconds=retry_in), "last_error": outcome.error}
    # Only the lease holder moves the delivery on (a lease that ran out and was taken over
    # leaves the delivery to its new holder; this attempt is still on record).
    await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == sent.id, deliveries.c.lease_owner == owner)
        .values(
            attempt_count=deliveries.c.attempt_count + 1,
            lease_until=None,
            lease_owner=None,
            **state,
        )
    )
    s = subscriptions.c
    endpoint = update(subscriptions).where(s.id == sent.subscription.id)
    if outcome.ok:  # closes the circuit (a healthy endpoint's row is left alone)
        await conn.execute(
            endpoint.where(or_(s.consecutive_failures > 0, s.paused_until.is_not(None))).values(
                consecutive_failures=0, failing_since=None, paused_until=None
            )
        )
        return
    # The count grows in the statement itself: two replicas' failures both count.
    await conn.execute(
        endpoint.values(
            consecutive_failures=s.consecutive_failures + 1,
            failing_since=func.coalesce(s.failing_since, literal(now, When)),
            paused_until=case(
                (
                    s.consecutive_failures + 1 >= breaker_failures,
                    literal(now + timedelta(seconds=breaker_pause), When),
                ),
                else_=s.paused_until,
            ),
        )
    )


# -- reading and redriving ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    subscription_id: str
    event_id: str
    event_type: str
    subject: str | None
    status: str
    attempt_count: int
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None
    attempts: list[Outcome]


_LISTED = (
    deliveries.c.id,
    deliveries.c.subscription_id,
    deliveries.c.event_id,
    deliveries.c.event_type,
    deliveries.c.subject,
    deliveries.c.status,
    deliveries.c.attempt_count,
    deliveries.c.next_attempt_at,
    deliveries.c.created_at,
    deliveries.c.delivered_at,
    deliveries.c.last_error,
)


async def _with_attempts(conn: Connection, rows: Sequence[Any]) -> list[Delivery]:
    ids = [r.id for r in rows]
    tried: dict[str, list[Outcome]] = {i: [] for i in ids}
    if ids:
        found = await conn.execute(
            select(attempts).where(attempts.c.delivery_id.in_(ids)).order_by(attempts.c.at)
        )
        for a in found.all():
            tried[a.delivery_id].append(
                Outcome(a.at, a.status_code, a.latency_ms, a.error, a.response_excerpt)
            )
    return [Delivery(**dict(r._mapping), attempts=tried[r.id]) for r in rows]


async def deliveries_of(
    conn: Connection, subscription_id: str, status: str | None, cursor: str | None, limit: int
) -> tuple[list[Delivery], str | None]:
    """Newest first (ids are UUIDv7s: their order is their making's); the cursor is the last
    id of the page before."""
    query = select(*_LISTED).where(deliveries.c.subscription_id == subscription_id)
    if status:
        query = query.where(deliveries.c.status == status)
    if cursor:
        query = query.where(deliveries.c.id < cursor)
    rows = (await conn.execute(query.order_by(deliveries.c.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return await _with_attempts(conn, rows), (rows[-1].id if more else None)


async def delivery(conn: Connection, delivery_id: str) -> Delivery | None:
    rows = (await conn.execute(select(*_LISTED).where(deliveries.c.id == delivery_id))).all()
    found = await _with_attempts(conn, rows)
    return found[0] if found else None


async def redrive(conn: Connection, delivery_id: str, now: datetime) -> bool:
    """A dead or delivered delivery is pending again, due now, with a fresh attempt count."""
    done = await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id, deliveries.c.status.in_([DEAD, DELIVERED]))
        .values(
            status=PENDING,
            attempt_count=0,
            next_attempt_at=now,
            lease_until=None,
            lease_owner=None,
            delivered_at=None,
        )
        .returning(deliveries.c.id)
    )
    return done.first() is not None
