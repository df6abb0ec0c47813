"""The delivery worker: POSTs due deliveries, records each attempt, schedules the next.

It runs beside the event consumer (a service task), so a slow or dead endpoint holds up only
its own deliveries: never the saga, never another endpoint's. Bounds: ``webhook_concurrency``
POSTs in flight per process, ``webhook_endpoint_concurrency`` per endpoint (deliveries of one
subject go one at a time, in the events' order: see ``store.DUE``), ``webhook_timeout`` per
POST, ``webhook_response_limit`` bytes of an answer read. No redirect is followed (a 3xx is a
failure).

The database work is batched, so that it does not grow with every POST: a round claims, for each
endpoint with room, as many due deliveries as it has room for (one query finds them, one update
leases them for ``webhook_timeout`` + 30 s), and the outcomes of the POSTs that ended meanwhile
are recorded together in one transaction (``Recorder``), whose commit starts the next round.
Replicas share the work: two never hold one delivery's lease at once; a replica that dies
mid-POST leaves its lease to run out and another sends the delivery again, under the same
``webhook-id``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from functools import partial

import aiohttp
import structlog

from mercato.platform.ids import new_id
from mercato.platform.retention import prune_forever
from mercato.platform.runtime.service import ServiceContext
from mercato.services.webhooks import store
from mercato.services.webhooks.domain import Schedule, signatures
from mercato.services.webhooks.handlers import WAKE
from mercato.services.webhooks.targets import refused_literal, resolver

log = structlog.get_logger(__name__)

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
RECORD_RETRY = 0.5  # seconds before outcomes the database refused are written again
USER_AGENT = "Mercato-Webhooks/1"


class Recorder:
    """Writes the outcomes of the POSTs that ended while it wrote the ones before, in one
    transaction, then calls ``recorded`` (the next round of claims: the deliveries that waited
    for these are due now). Outcomes the database refused wait and go with the next ones; if
    the process dies first, their leases run out and the deliveries are sent again, under the
    same ``webhook-id``."""

    def __init__(self, ctx: ServiceContext, owner: str, recorded: asyncio.Event) -> None:
        s = ctx.settings
        self.ctx = ctx
        self.owner = owner
        self.breaker = (s.webhook_breaker_failures, s.webhook_breaker_pause)
        self.recorded = recorded
        self.waiting: list[store.Attempt] = []
        self.ready = asyncio.Event()

    def add(self, attempt: store.Attempt) -> None:
        self.waiting.append(attempt)
        self.ready.set()

    async def run(self) -> None:
        while True:
            await self.ready.wait()
            self.ready.clear()
            if not await self.flush():
                await asyncio.sleep(RECORD_RETRY)
                self.ready.set()
            self.recorded.set()

    async def flush(self) -> bool:
        """Write what is waiting; False if the database refused it (it waits again, to be
        written with the next ones; the transaction rolled back, so nothing is twice)."""
        batch, self.waiting = self.waiting, []
        if not batch:
            return True
        try:
            async with self.ctx.db.begin() as conn:
                await store.record(conn, self.owner, batch, *self.breaker)
        except asyncio.CancelledError:
            self.waiting[:0] = batch  # stopping: the last flush writes them
            raise
        except Exception as exc:
            self.waiting[:0] = batch
            log.warning(
                "webhooks: could not record deliveries; trying again",
                deliveries=len(batch),
                error=str(exc),
            )
            return False
        return True


class Sender:
    def __init__(self, ctx: ServiceContext, session: aiohttp.ClientSession):
        s = ctx.settings
        self.ctx = ctx
        self.session = session
        self.schedule = Schedule(s.webhook_max_attempts, s.webhook_retry_base, s.webhook_retry_max)
        self.owner = new_id()  # this worker's name on its leases
        self.lease = s.webhook_timeout + 30
        self.timeout = s.webhook_timeout
        self.response_limit = s.webhook_response_limit
        self.allow_private = s.webhook_allow_private_targets
        self.concurrency = s.webhook_concurrency
        self.endpoint_concurrency = s.webhook_endpoint_concurrency
        self.poll = s.webhook_poll_interval
        self.settle = s.webhook_order_settle
        self.wake = asyncio.Event()
        self.recorder = Recorder(ctx, self.owner, self.wake)
        self.in_flight: set[asyncio.Task[None]] = set()
        self.per_endpoint: Counter[str] = Counter()
        self.rounds = 0

    async def run(self) -> None:
        recorder = asyncio.create_task(self.recorder.run())
        try:
            while True:
                self.wake.clear()
                try:
                    await self.start_due()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database is briefly away: the next round tries
                    log.warning("webhooks: could not look for due deliveries", error=str(exc))
                try:
                    async with asyncio.timeout(self.poll):
                        await self.wake.wait()
                except TimeoutError:
                    pass
        finally:
            recorder.cancel()
            await asyncio.gather(recorder, return_exceptions=True)

    async def start_due(self) -> None:
        """One round: each sendable endpoint's due deliveries, as many as it has room for."""
        if len(self.in_flight) >= self.concurrency:
            return
        now = datetime.now(UTC)
        claimed: list[store.Outgoing] = []
        self.rounds += 1
        async with self.ctx.db.begin() as conn:
            found = await store.sendable_subscriptions(conn, now)
            # Each round starts at another endpoint, so that busy endpoints taking every free
            # slot in turn cannot keep the others from getting any.
            turn = self.rounds % len(found) if found else 0
            for sub in found[turn:] + found[:turn]:
                room = min(
                    self.endpoint_concurrency - self.per_endpoint[sub.id],
                    self.concurrency - len(self.in_flight) - len(claimed),
                )
                if room > 0:
                    claimed += await store.claim(
                        conn, sub, self.owner, now, self.lease, room, self.settle
                    )
        for sent in claimed:
            self.per_endpoint[sent.subscription.id] += 1
            task = asyncio.create_task(self.send(sent))
            self.in_flight.add(task)

    async def send(self, sent: store.Outgoing) -> None:
        try:
            outcome = await self.post(sent)
            retry_in = None if outcome.ok else self.schedule.delay(sent.attempt_count + 1)
            self.recorder.add(store.Attempt(sent, outcome, retry_in))
            if not outcome.ok:
                log.info(
                    "webhook delivery failed",
                    delivery_id=sent.id,
                    subscription_id=sent.subscription.id,
                    error=outcome.error,
                    retry_in=retry_in,
                )
        except Exception as exc:  # its lease runs out and it is tried again
            log.warning("webhooks: could not send a delivery", delivery_id=sent.id, error=str(exc))
        finally:
            self.per_endpoint[sent.subscription.id] -= 1
            task = asyncio.current_task()
            if task is not None:
                self.in_flight.discard(task)
            self.wake.set()  # room for another (this subject's next waits for the record)

    async def post(self, sent: store.Outgoing) -> store.Outcome:
        """One attempt: the structured CloudEvent, signed with every secret that signs now."""
        sub = sent.subscription
        at = datetime.now(UTC)
        timestamp = int(at.timestamp())
        body = sent.body.encode()
        headers = {
            "content-type": CONTENT_TYPE,
            "user-agent": USER_AGENT,
            "webhook-id": sent.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures(sub.signing_secrets(at), sent.id, timestamp, body),
        }
        why = None if self.allow_private else refused_literal(sub.url)
        if why is not None:
            return store.Outcome(at, None, 0, f"refused: {why}", None)
        started = time.monotonic()
        status: int | None = None
        excerpt: str | None = None
        try:
            async with self.session.post(
                sub.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                excerpt = await self.read_some(response)
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        latency = int((time.monotonic() - started) * 1000)
        return store.Outcome(at, status, latency, error and _storable(error)[:2000], excerpt)

    async def read_some(self, response: aiohttp.ClientResponse) -> str:
        """At most ``webhook_response_limit`` bytes of the answer; the rest is never read (the
        connection is closed instead)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(4096):
            chunks.append(chunk)
            size += len(chunk)
            if size >= self.response_limit:
                response.close()
                break
        text = b"".join(chunks)[: self.response_limit].decode("utf-8", errors="replace")
        return _storable(text)


def _storable(text: str) -> str:
    return text.replace("\x00", "\\x00")


async def deliver_webhooks(ctx: ServiceContext) -> None:
    """The service task: one sender per process, its HTTP client guarded against SSRF."""
    s = ctx.settings
    connector = aiohttp.TCPConnector(
        resolver=resolver(s.webhook_allow_private_targets),
        limit=s.webhook_concurrency,
        use_dns_cache=False,  # every connection resolves (and is checked) afresh
    )
    timeout = aiohttp.ClientTimeout(total=s.webhook_timeout, connect=min(5.0, s.webhook_timeout))
    session = aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, trust_env=False
    )
    sender = Sender(ctx, session)
    WAKE[id(ctx.db)] = sender.wake.set
    try:
        await sender.run()
    finally:
        WAKE.pop(id(ctx.db), None)
        for task in list(sender.in_flight):
            task.cancel()
        await asyncio.gather(*sender.in_flight, return_exceptions=True)
        await sender.recorder.flush()  # the outcomes in hand (or their leases run out)
        await session.close()


async def prune_delivered(ctx: ServiceContext) -> None:
    """The service task that applies ``MERCATO_WEBHOOK_RETENTION``."""
    await prune_forever(
        "webhook deliveries", ctx.settings.webhook_retention, partial(store.prune, ctx.db)
    )
