"""The NATS JetStream adapter of the EventBus port.

Written on raw nats-py rather than FastStream: the port needs batch pulls that the inbox
handles in one database transaction, a verdict per message (ack, or nak with a delay) and
publisher acks awaited together for a whole outbox batch; FastStream hands messages to a
handler one at a time and confirms publishes one by one.

Several server URLs (a cluster) all go to nats-py, which connects to one of them and, when that
server is lost, to another; the streams are kept in ``replicas`` copies on the cluster's servers
(``MERCATO_NATS_REPLICAS``), so with 3 a node may die without losing a stored message.

Layout (nats-server 2.9: a consumer has one filter subject):

- Stream ``{NS}_EVENTS`` on ``{ns}.events.>``, file storage, interest retention: a message is
  kept until every consumer bound to it has acknowledged it, so the stream holds the backlog,
  not the history, and a message published before any consumer exists is dropped, as RabbitMQ
  drops an unroutable one. ``max_age`` bounds what a removed service's forgotten consumer pins.
  Publishes carry ``Nats-Msg-Id`` = the event id, so the server drops a relay's retry within
  the duplicate window (the consumer's inbox drops later ones).
- A durable pull consumer per (service, pattern), shared by the service's replicas, explicit
  ack, ``max_deliver``. A pull asks for up to a batch with ``no_wait`` and ``expires``: the
  server holds it until a first message, then returns what is ready. The pullers of one
  subscription share its processor: what they bring while a batch is being handled goes
  together into the next batch (one transaction), as one RabbitMQ queue carries all patterns.
- The same stream also holds ``{ns}.direct.{consumer}.>``: what ``send`` addresses to one
  service (a replay). Each subscription has one more durable, filtered on its own direct
  subject, so a replay reaches that service's consumer alone.
- Stream ``{NS}_EXHAUSTED`` stores the server's MAX_DELIVERIES advisories (a handler that kept
  killing its process). Each service has a durable consumer on it; the message named by the
  advisory is read from the events stream by sequence and handed over with ``exhausted=True``,
  and the advisory is acknowledged only once the inbox has stored the dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from mercato.platform.bus.port import (
    Processor,
    RawMessage,
    Retry,
    Subscription,
    Verdict,
    check_subscription,
)
from mercato.platform.envelope import NATS_PREFIX, Envelope
from mercato.platform.settings import broker_urls
from mercato.platform.waits import within

log = structlog.get_logger(__name__)

_WORD = re.compile(r"[^.\s*>#]+")
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+")
_ADVISORY = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
_NEXT = "$JS.API.CONSUMER.MSG.NEXT"
_DIRECT = "__direct"  # the pattern name of a subscription's durable for ``send``

Convert = Callable[[Msg], Awaitable[RawMessage | None]]


def topic_subject(namespace: str, topic: str, under: str = "events") -> str:
    words = topic.split(".")
    if not all(_WORD.fullmatch(w) for w in words):
        raise ValueError(f"invalid topic {topic!r}: dotted words without wildcards or spaces")
    return f"{namespace}.{under}.{topic}"


def pattern_subject(namespace: str, pattern: str) -> str:
    """AMQP ``*`` is NATS ``*``; a trailing ``#`` becomes ``>`` (one or more words, where AMQP
    also allows none: topics always have two words or more, so ``#`` alone still means all)."""
    words = pattern.split(".")
    for i, word in enumerate(words):
        if word == "#" and i != len(words) - 1:
            raise ValueError(f"pattern {pattern!r}: NATS has no '#' except as the last word")
        if word not in ("*", "#") and not _WORD.fullmatch(word):
            raise ValueError(f"invalid pattern {pattern!r}")
    return f"{namespace}.events." + ".".join(">" if w == "#" else w for w in words)


def _safe(text: str) -> str:
    # Consumer names cannot hold '.', '*', '>' or spaces; '__' never survives, so it can
    # separate the service from the pattern in a durable's name.
    text = text.replace("*", "any").replace("#", "all")
    return re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")[:64] or "x"


def durable_name(consumer: str, pattern: str) -> str:
    digest = hashlib.sha1(f"{consumer}\0{pattern}".encode()).hexdigest()[:8]
    return f"{_safe(consumer)}__{_safe(pattern)}_{digest}"


class NatsBus:
    prefix = NATS_PREFIX

    def __init__(
        self,
        url: str | Sequence[str],
        namespace: str = "mercato",
        *,
        replicas: int = 1,
        ack_timeout: float = 10.0,
        ack_wait: float = 30.0,
        poll: float = 5.0,
        max_age: float = 7 * 86400.0,
        duplicate_window: float = 300.0,
    ):
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(f"namespace {namespace!r}: letters, digits, '-' and '_' only")
        # One server or the cluster's: "nats://h1:4222,h2:4222" or a list.
        self.servers = list(broker_urls(url) if isinstance(url, str) else url)
        self.url = ",".join(self.servers)
        self.namespace = namespace
        self.replicas = replicas
        self.stream = f"{namespace.upper()}_EVENTS"
        self.exhausted_stream = f"{namespace.upper()}_EXHAUSTED"
        self.ack_timeout = ack_timeout
        self.ack_wait = ack_wait
        self.poll = poll
        self.max_age = max_age
        self.duplicate_window = duplicate_window
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._subscriptions: list[Subscription] = []
        self._durables: dict[str, list[str]] = {}  # consumer → its durable consumers' names

    # -- connection ------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._nc is not None:
            return
        nc = Client()

        async def on_error(exc: Exception) -> None:
            log.warning("nats connection error", error=str(exc))

        try:
            # Reconnect forever once up, but bound the first connection.
            await within(
                10.0,
                nc.connect(
                    self.servers,
                    name=f"mercato-{self.namespace}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    connect_timeout=2,
                    error_cb=on_error,
                ),
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            await nc.close()
            raise ConnectionError(f"cannot reach NATS at {self.url}: {exc!r}") from exc
        self._nc, self._js = nc, nc.jetstream(timeout=self.ack_timeout)
        try:
            await self._ensure_stream(
                self.stream, f"{self.namespace}.events.>", f"{self.namespace}.direct.>"
            )
            await self._ensure_stream(self.exhausted_stream, f"{_ADVISORY}.{self.stream}.*")
        except BaseException:
            await self.close()
            raise

    async def _ensure_stream(self, name: str, *subjects: str) -> None:
        config = api.StreamConfig(
            name=name,
            subjects=list(subjects),
            retention=api.RetentionPolicy.INTEREST,
            storage=api.StorageType.FILE,
            max_age=self.max_age,
            duplicate_window=self.duplicate_window,
            num_replicas=self.replicas,
        )
        js = self._jetstream()
        try:
            await js.stream_info(name)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except APIError as exc:  # e.g. more replicas than servers with JetStream
                raise RuntimeError(
                    f"NATS cannot create stream {name} with {self.replicas} replica(s) "
                    f"(MERCATO_NATS_REPLICAS): {exc.description or exc}"
                ) from exc
            return
        try:
            await js.update_stream(config)
        except APIError as exc:
            raise RuntimeError(
                f"stream {name} exists and cannot take our config ({self.replicas} replica(s), "
                f"MERCATO_NATS_REPLICAS): {exc}"
            ) from exc

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.stop()
        if self._nc is not None:
            await self._nc.close()
        self._nc = self._js = None

    async def ping(self) -> None:
        if self._nc is None or not self._nc.is_connected:
            raise ConnectionError(f"not connected to NATS at {self.url}")
        await self._jetstream().stream_info(self.stream)

    async def delete_namespace(self) -> None:
        """Delete this namespace's streams and, with them, every consumer on them."""
        for name in (self.stream, self.exhausted_stream):
            with contextlib.suppress(NotFoundError):
                await self._jetstream().delete_stream(name)

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise ConnectionError("NatsBus is not connected: call connect() first")
        return self._js

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        return await self._acked(
            [(topic_subject(self.namespace, topic), envelope, True) for topic, envelope in batch]
        )

    async def _acked(self, messages: Sequence[tuple[str, Envelope, bool]]) -> list[bool]:
        """Publish (subject, event, with its Nats-Msg-Id) in order, the acks awaited together."""
        js = self._jetstream()
        acks: list[asyncio.Future[api.PubAck] | None] = []
        for subject, envelope, deduplicated in messages:
            headers, body = envelope.to_binary(self.prefix)
            if deduplicated:
                headers["Nats-Msg-Id"] = envelope.id
            try:
                acks.append(
                    await js.publish_async(
                        subject, body, wait_stall=self.ack_timeout, headers=headers
                    )
                )
            except Exception as exc:
                log.warning("publish failed", subject=subject, error=repr(exc))
                acks.append(None)
        pending = [a for a in acks if a is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=self.ack_timeout)
            for ack in late:
                ack.cancel()
        return [a is not None and not a.cancelled() and a.exception() is None for a in acks]

    async def publish_raw(self, topic: str, headers: Mapping[str, str], body: bytes) -> None:
        await self._jetstream().publish(
            topic_subject(self.namespace, topic), body, headers=dict(headers)
        )

    async def send(self, consumer: str, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        js = self._jetstream()
        try:
            await js.consumer_info(self.stream, durable_name(consumer, _DIRECT))
        except NotFoundError:
            raise LookupError(f"no consumer {consumer!r}: it never subscribed") from None
        under = f"direct.{_safe(consumer)}"
        # No Nats-Msg-Id: the server would drop a replay as a copy of the original publish.
        return await self._acked(
            [(topic_subject(self.namespace, t, under), envelope, False) for t, envelope in batch]
        )

    # -- consuming -------------------------------------------------------------------------
    async def queue_depth(self, consumer: str) -> int | None:
        """Messages of the stream ``consumer``'s durable consumers have yet to be delivered
        (JetStream's ``num_pending``), summed."""
        names = self._durables.get(consumer)
        if not names:
            return None
        js = self._jetstream()
        infos = [await js.consumer_info(self.stream, name) for name in names]
        return sum(int(info.num_pending or 0) for info in infos)

    async def subscribe(
        self,
        consumer: str,
        patterns: Sequence[str],
        processor: Processor,
        *,
        batch_size: int = 100,
        max_deliveries: int = 10,
        batch_wait: float = 0.0,
    ) -> Subscription:
        check_subscription(consumer, patterns, batch_size, max_deliveries, batch_wait)
        filters = {durable_name(consumer, p): pattern_subject(self.namespace, p) for p in patterns}
        filters[durable_name(consumer, _DIRECT)] = f"{self.namespace}.direct.{_safe(consumer)}.>"
        self._durables[consumer] = list(filters)
        js, nc = self._jetstream(), self._nc
        assert nc is not None
        # The advisory consumer first: in an interest stream, an advisory nobody is bound to
        # yet would be dropped.
        exhausted = f"{_safe(consumer)}__exhausted"
        await js.add_consumer(
            self.exhausted_stream,
            api.ConsumerConfig(
                durable_name=exhausted,
                ack_policy=api.AckPolicy.EXPLICIT,
                ack_wait=self.ack_wait,
                filter_subject=f"{_ADVISORY}.{self.stream}.*",
            ),
        )
        for name, subject in filters.items():
            await js.add_consumer(
                self.stream,
                api.ConsumerConfig(
                    durable_name=name,
                    deliver_policy=api.DeliverPolicy.NEW,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=self.ack_wait,
                    max_deliver=max_deliveries,
                    filter_subject=subject,
                ),
            )
        # One batch at a time per subscription, as on the other buses, and what the pullers
        # hand in meanwhile goes together into the next one.
        batcher = _Batcher(processor, self.ack_wait)
        pullers = [
            _Puller(self, nc, self.stream, name, batch_size, self._event, batcher, batch_wait)
            for name in filters
        ]
        ours = _safe(consumer) + "__"
        pullers.append(
            _Puller(
                self,
                nc,
                self.exhausted_stream,
                exhausted,
                batch_size,
                lambda msg: self._exhausted(msg, ours),
                batcher,
            )
        )
        for puller in pullers:
            await puller.start()
        stopped = False

        async def stop() -> None:
            nonlocal stopped
            if stopped:
                return
            stopped = True
            for puller in pullers:
                puller.stopping = True
                puller.wake.set()
            await asyncio.gather(*(p.task for p in pullers if p.task is not None))
            for puller in pullers:
                await puller.close()
            self._subscriptions.remove(subscription)

        subscription = Subscription(stop=stop, name=consumer, patterns=tuple(patterns))
        self._subscriptions.append(subscription)
        return subscription

    async def _event(self, msg: Msg) -> RawMessage:
        topic = msg.subject.removeprefix(f"{self.namespace}.")
        if topic.startswith("direct."):  # direct.{consumer}.{topic}
            topic = topic.split(".", 2)[2]
        return RawMessage(
            topic=topic.removeprefix("events."),
            headers=dict(msg.headers or {}),
            body=msg.data,
            prefix=self.prefix,
            attempt=msg.metadata.num_delivered,
        )

    async def _exhausted(self, advisory: Msg, ours: str) -> RawMessage | None:
        note = json.loads(advisory.data)
        if not str(note.get("consumer", "")).startswith(ours):
            return None  # another service's message: its own advisory consumer has it
        try:
            stored = await self._jetstream().get_msg(self.stream, seq=int(note["stream_seq"]))
        except NotFoundError:
            log.error("exhausted message no longer in the stream", advisory=note)
            return None
        return RawMessage(
            topic=(stored.subject or "").removeprefix(f"{self.namespace}.events."),
            headers=dict(stored.headers or {}),
            body=stored.data or b"",
            prefix=self.prefix,
            attempt=int(note.get("deliveries", 0)),
            exhausted=True,
        )


class _Puller:
    """Pulls one durable consumer into a processor, one batch at a time."""

    def __init__(
        self,
        bus: NatsBus,
        nc: Client,
        stream: str,
        durable: str,
        batch_size: int,
        convert: Convert,
        batcher: _Batcher,
        batch_wait: float = 0.0,
    ):
        self.nc, self.durable, self.batch_size = nc, durable, batch_size
        self.batch_wait = batch_wait
        self.poll = bus.poll
        self.convert, self.batcher = convert, batcher
        self.next_subject = f"{_NEXT}.{stream}.{durable}"
        self.inbox = nc.new_inbox()
        self.received: deque[Msg] = deque()
        self.wake = asyncio.Event()
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self.sub: NatsSubscription | None = None

    async def start(self) -> None:
        async def arrived(msg: Msg) -> None:
            self.received.append(msg)
            self.wake.set()

        self.sub = await self.nc.subscribe(self.inbox, cb=arrived)
        self.task = asyncio.create_task(self._run(), name=f"nats-pull-{self.durable}")

    async def close(self) -> None:
        """Unsubscribe, so the server drops our open pull; hand back what arrived meanwhile."""
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
        await _settle([(m, Retry(0)) for m in self.received if m.reply])
        self.received.clear()

    async def _run(self) -> None:
        while not self.stopping:
            try:
                msgs = await self._pull(self.batch_size, self.poll)
                if msgs and self.batch_wait > 0:
                    await self._fill(msgs)
                if msgs and self.stopping:
                    await _settle([(m, Retry(0)) for m in msgs])
                elif msgs:
                    await self._handle(msgs)
            except Exception as exc:  # the server is away or restarting: try again shortly
                log.warning("nats pull failed", consumer=self.durable, error=repr(exc))
                await self._sleep(1.0)

    async def _fill(self, msgs: list[Msg]) -> None:
        """``batch_wait``: pull what comes within it after a batch's first messages."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch_wait
        while len(msgs) < self.batch_size and not self.stopping:
            left = deadline - loop.time()
            if left <= 0.001:
                return
            msgs.extend(await self._pull(self.batch_size - len(msgs), left))

    async def _pull(self, size: int, wait: float) -> list[Msg]:
        """Up to ``size`` messages: waits at most ``wait`` seconds for the first, then takes
        what the server has at hand."""
        request = {"batch": size, "no_wait": True, "expires": int(wait * 1e9)}
        await self.nc.publish(self.next_subject, json.dumps(request).encode(), reply=self.inbox)
        deadline = asyncio.get_running_loop().time() + wait + 2.0
        msgs: list[Msg] = []
        while len(msgs) < size and not self.stopping:
            msg = await self._next(deadline)
            if msg is None:
                break
            if msg.reply:  # a delivery; status messages have no reply subject
                msgs.append(msg)
                continue
            status = (msg.headers or {}).get("Status")
            if status in ("404", "408"):  # nothing (more) for now
                break
            if status != "100":  # 409: consumer deleted, too many pulls waiting, ...
                log.warning(
                    "nats pull refused",
                    consumer=self.durable,
                    status=status,
                    description=(msg.headers or {}).get("Description"),
                )
                if not msgs:
                    await self._sleep(1.0)
                break
        return msgs

    async def _next(self, deadline: float) -> Msg | None:
        while not self.received:
            self.wake.clear()
            timeout = deadline - asyncio.get_running_loop().time()
            if self.stopping or timeout <= 0:
                return None
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the task's own
            # cancellation when the wait ends at that moment, and the loop would go on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.wake.wait()
        return self.received.popleft()

    async def _sleep(self, seconds: float) -> None:
        self.wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for (see _next)
                await self.wake.wait()

    async def _handle(self, msgs: list[Msg]) -> None:
        ready: list[tuple[Msg, RawMessage]] = []
        settled: list[tuple[Msg, Verdict]] = []
        for msg in msgs:
            try:
                raw = await self.convert(msg)
            except Exception as exc:
                log.warning("cannot read message", consumer=self.durable, error=repr(exc))
                settled.append((msg, Retry(1.0)))
                continue
            if raw is None:
                settled.append((msg, None))
            else:
                ready.append((msg, raw))
        if ready:
            try:
                verdicts = await self.batcher.process(
                    [m for m, _ in ready], [raw for _, raw in ready]
                )
            except Exception:
                log.exception("processor failed; batch will be redelivered")
                verdicts = [Retry(1.0)] * len(ready)
            settled += [(m, v) for (m, _), v in zip(ready, verdicts, strict=True)]
        await _settle(settled)


# What one puller handed in: its messages, as read, and where its verdicts go.
_Handed = tuple[list[Msg], list[RawMessage], asyncio.Future[list[Verdict]]]


class _Batcher:
    """The processor of one subscription, shared by its pullers (one per pattern): a batch at
    a time, and the messages handed in while one is in the processor go together into the
    next, so a service bound to several patterns handles them in one transaction, as it does
    on RabbitMQ, where one queue carries all its patterns."""

    def __init__(self, processor: Processor, ack_wait: float):
        self.processor, self.ack_wait = processor, ack_wait
        self._waiting: list[_Handed] = []
        self._busy = False

    async def process(self, msgs: list[Msg], batch: list[RawMessage]) -> list[Verdict]:
        answer: asyncio.Future[list[Verdict]] = asyncio.get_running_loop().create_future()
        self._waiting.append((msgs, batch, answer))
        if not self._busy:  # this caller runs the batches until none is waiting
            self._busy = True
            try:
                await self._drain()
            finally:
                self._busy = False
        return await answer

    async def _drain(self) -> None:
        while self._waiting:
            taken, self._waiting = self._waiting, []
            msgs = [m for part, _, _ in taken for m in part]
            batch = [raw for _, part, _ in taken for raw in part]
            try:
                verdicts = await self._run(msgs, batch)
            except BaseException as exc:
                # Stopped midway (or the processor broke): every caller's batch goes back.
                failure = exc if isinstance(exc, Exception) else RuntimeError("stopped")
                for _, _, answer in taken + self._waiting:
                    if not answer.done():
                        answer.set_exception(failure)
                self._waiting = []
                if not isinstance(exc, Exception):
                    raise
                continue
            start = 0
            for _, part, answer in taken:
                if not answer.done():
                    answer.set_result(verdicts[start : start + len(part)])
                start += len(part)

    async def _run(self, msgs: list[Msg], batch: list[RawMessage]) -> list[Verdict]:
        work = asyncio.ensure_future(self.processor(batch))
        # A long batch (a slow database) must not be redelivered to a sibling meanwhile.
        while not (await asyncio.wait({work}, timeout=self.ack_wait / 3))[0]:
            for msg in msgs:
                with contextlib.suppress(Exception):  # then ack_wait decides; work goes on
                    await msg.in_progress()
        verdicts = work.result()
        if len(verdicts) != len(batch):
            raise RuntimeError(f"{len(verdicts)} verdicts for {len(batch)} messages")
        return verdicts


async def _settle(verdicts: Sequence[tuple[Msg, Verdict]]) -> None:
    for msg, verdict in verdicts:
        try:
            if verdict is None:
                await msg.ack()
            else:
                await msg.nak(delay=verdict.delay or None)
        except Exception as exc:  # not settled: the server redelivers it after ack_wait
            log.warning("cannot settle message", error=repr(exc))
