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
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)

from mercato.platform.ids import new_id
from mercato.platform.storage.sql import Connection, Database
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
    query = select(subscriptions).where(subscriptions.c.active).order_by(subscriptions.c.id)
    rows = (await conn.execute(query)).all()
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
# The first pending delivery of each subject of one subscription (in flight included, so one
# subject has one POST at a time across every replica), by the event's own time (then its id,
# a UUIDv7), not the order the rows were written in: two replicas consuming two events of one
# order may commit them in either order. Events without a subject are not ordered. A window over
# the subscription's pending deliveries, not an anti-join: its plan has no join for stale
# statistics to get wrong (a fresh table's nested-loop anti-join took seconds a round).
_heads = (
    select(
        deliveries.c.id,
        deliveries.c.subject,
        deliveries.c.next_attempt_at,
        deliveries.c.event_time,
        deliveries.c.lease_until,
        func.row_number()
        .over(
            partition_by=deliveries.c.subject,
            order_by=(deliveries.c.event_time, deliveries.c.event_id),
        )
        .label("place"),
    )
    .where(
        deliveries.c.subscription_id == bindparam("for_subscription"),
        deliveries.c.status == PENDING,
    )
    .subquery()
)
# Of those, the ones due now, unleased, oldest first. An event is not sent before it is
# ``settle`` seconds old (made before ``settled``): an earlier event of its subject that
# reached the database within that time goes out first.
DUE = (
    select(_heads.c.id)
    .where(
        or_(_heads.c.place == 1, _heads.c.subject.is_(None)),
        _heads.c.next_attempt_at <= bindparam("now"),
        _heads.c.event_time <= bindparam("settled"),
        or_(_heads.c.lease_until.is_(None), _heads.c.lease_until < bindparam("now")),
    )
    .order_by(_heads.c.next_attempt_at)
    .limit(bindparam("limit"))
)

# The claim: only rows the UPDATE itself still finds pending, due and unleased are leased and
# returned, so of two replicas claiming one delivery at once one gets it (the other's re-check
# fails on the row the first one changed), and one whose failed attempt another replica has
# just recorded waits for its retry time.
CLAIM = (
    update(deliveries)
    .where(
        deliveries.c.id.in_(bindparam("ids", expanding=True)),
        deliveries.c.status == PENDING,
        deliveries.c.next_attempt_at <= bindparam("now"),
        or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < bindparam("now")),
    )
    .values(lease_until=bindparam("until"), lease_owner=bindparam("owner"))
    .returning(deliveries.c.id, deliveries.c.body, deliveries.c.attempt_count)
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A claimed delivery, with what its POST needs."""

    id: str
    body: str
    attempt_count: int
    subscription: Subscription


async def sendable_subscriptions(conn: Connection, now: datetime) -> list[Subscription]:
    """Active subscriptions whose circuit is closed (not paused) now."""
    return [s for s in await active_subscriptions(conn) if not s.paused(now)]


async def claim(
    conn: Connection,
    subscription: Subscription,
    owner: str,
    now: datetime,
    lease: float,
    limit: int,
    settle: float = 0.0,
) -> list[Outgoing]:
    """At most ``limit`` of ``subscription``'s due deliveries, leased to ``owner`` for
    ``lease`` seconds, oldest first."""
    params: dict[str, Any] = {
        "for_subscription": subscription.id,
        "now": now,
        "settled": now - timedelta(seconds=settle),
        "limit": limit,
    }
    ids = list((await conn.execute(DUE, params)).scalars())
    if not ids:
        return []
    claim_params = {"ids": ids, "now": now, "until": now + timedelta(seconds=lease), "owner": owner}
    rows = (await conn.execute(CLAIM, claim_params)).all()
    return [Outgoing(r.id, r.body, r.attempt_count, subscription) for r in rows]


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


@dataclass(frozen=True, slots=True)
class Attempt:
    """One POST's outcome, to be recorded; ``retry_in`` (seconds; None: no attempt left) is
    used only when it failed."""

    sent: Outgoing
    outcome: Outcome
    retry_in: float | None


# Only the lease holder moves a delivery on (a lease that ran out and was taken over leaves
# the delivery to its new holder; the attempt is still on record). ``next_at`` NULL keeps the
# delivery's own time.
_MOVE_ON = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("delivery_id"), deliveries.c.lease_owner == bindparam("owner")
    )
    .values(
        attempt_count=deliveries.c.attempt_count + 1,
        lease_until=None,
        lease_owner=None,
        status=bindparam("new_status"),
        delivered_at=bindparam("delivered"),
        next_attempt_at=func.coalesce(
            bindparam("next_at", type_=When), deliveries.c.next_attempt_at
        ),
        last_error=bindparam("error"),
    )
)


async def record(
    conn: Connection,
    owner: str,
    done: Sequence[Attempt],
    breaker_failures: int,
    breaker_pause: float,
) -> None:
    """Attempts' outcomes: their rows, their deliveries' next states, their endpoints'
    breakers: a read of which deliveries still exist, one insert, one executemany update,
    and one or two updates per endpoint. Nothing is written for a delivery deleted meanwhile
    (with its subscription)."""
    # Rows are locked in id order (deliveries, then endpoints), as the claim locks them, so
    # two replicas' transactions never wait for each other in a circle.
    done = sorted(done, key=lambda a: a.sent.id)
    if not done:
        return
    ids = [a.sent.id for a in done]
    present = set(await conn.scalars(select(deliveries.c.id).where(deliveries.c.id.in_(ids))))
    done = [a for a in done if a.sent.id in present]
    if not done:
        return
    await conn.execute(
        insert(attempts),
        [
            {
                "id": new_id(),
                "delivery_id": a.sent.id,
                "at": a.outcome.at,
                "status_code": a.outcome.status_code,
                "latency_ms": a.outcome.latency_ms,
                "error": a.outcome.error,
                "response_excerpt": a.outcome.excerpt,
            }
            for a in done
        ],
    )
    await conn.execute(_MOVE_ON, [_next_state(a, owner) for a in done])
    by_endpoint: dict[str, list[Outcome]] = {}
    for a in done:
        by_endpoint.setdefault(a.sent.subscription.id, []).append(a.outcome)
    for subscription_id in sorted(by_endpoint):
        outcomes = by_endpoint[subscription_id]
        await _breaker(conn, subscription_id, outcomes, breaker_failures, breaker_pause)


def _next_state(attempt: Attempt, owner: str) -> dict[str, Any]:
    outcome = attempt.outcome
    state: dict[str, Any] = {
        "delivery_id": attempt.sent.id,
        "owner": owner,
        "new_status": PENDING,
        "delivered": None,
        "next_at": None,
        "error": outcome.error,
    }
    if outcome.ok:
        state.update(new_status=DELIVERED, delivered=outcome.at)
    elif attempt.retry_in is None:
        state.update(new_status=DEAD)
    else:
        state.update(next_at=outcome.at + timedelta(seconds=attempt.retry_in))
    return state


async def _breaker(
    conn: Connection,
    subscription_id: str,
    outcomes: list[Outcome],
    breaker_failures: int,
    breaker_pause: float,
) -> None:
    """An endpoint's circuit after these outcomes: a success closes it, then the failures
    after the last success count, added in the statement itself (so another replica's
    failures recorded meanwhile count too)."""
    outcomes = sorted(outcomes, key=lambda o: o.at)
    last_ok = max((i for i, o in enumerate(outcomes) if o.ok), default=None)
    s = subscriptions.c
    endpoint = update(subscriptions).where(s.id == subscription_id)
    if last_ok is not None:  # closes the circuit (a healthy endpoint's row is left alone)
        await conn.execute(
            endpoint.where(or_(s.consecutive_failures > 0, s.paused_until.is_not(None))).values(
                consecutive_failures=0, failing_since=None, paused_until=None
            )
        )
        outcomes = outcomes[last_ok + 1 :]
    if not outcomes:
        return
    n, first, last = len(outcomes), outcomes[0].at, outcomes[-1].at
    await conn.execute(
        endpoint.values(
            consecutive_failures=s.consecutive_failures + n,
            failing_since=func.coalesce(s.failing_since, literal(first, When)),
            paused_until=case(
                (
                    s.consecutive_failures + n >= breaker_failures,
                    literal(last + timedelta(seconds=breaker_pause), When),
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


async def prune(db: Database, older_than: datetime, chunk: int = 5000) -> int:
    """Delete the deliveries delivered before ``older_than`` and their attempts, ``chunk`` a
    transaction; returns how many deliveries went. Dead and pending ones stay (a dead one
    waits for an admin's redrive), and one redriven meanwhile is no longer delivered."""
    removed = 0
    while True:
        oldest = (
            select(deliveries.c.id)
            .where(deliveries.c.status == DELIVERED, deliveries.c.delivered_at < older_than)
            .limit(chunk)
        )
        async with db.begin() as conn:
            gone = (
                (
                    await conn.execute(
                        delete(deliveries)
                        .where(
                            deliveries.c.id.in_(oldest.scalar_subquery()),
                            deliveries.c.status == DELIVERED,
                        )
                        .returning(deliveries.c.id)
                    )
                )
                .scalars()
                .all()
            )
            if gone:
                await conn.execute(delete(attempts).where(attempts.c.delivery_id.in_(gone)))
        removed += len(gone)
        if len(gone) < chunk:
            return removed
