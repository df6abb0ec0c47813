"""The RabbitMQ adapter (aio-pika).

Raw aio-pika rather than FastStream: the inbox consumer handles a *batch* of messages in one
database transaction and returns a verdict per message, and the relay pipelines publisher
confirms for a whole batch; FastStream's one-message-per-handler model hides both.

Topology, every name under the namespace (``mercato`` by default):
- ``{ns}.events``: a durable topic exchange; routing keys are the platform's topics.
- ``{ns}.{consumer}``: one durable quorum queue per consuming service, shared by its replicas
  (competing consumers), bound to exactly the service's patterns. Its delivery limit makes the
  broker give up on a message after ``max_deliveries`` deliveries that were never acknowledged
  (a handler that kills its process); the broker then moves it, at-least-once, through
  ``{ns}.dead-letters`` (direct) to ``{ns}.{consumer}.dead``, which the subscription also
  consumes, handing those messages over as ``exhausted`` so the inbox consumer stores them as
  dead letters with the rest.
Messages are persistent, in CloudEvents binary mode (``cloudEvents:*`` headers).

Queue arguments are fixed at creation: a queue left by an older version with other arguments
is reported, not silently reused (delete it, or move its messages, and start again).

A cluster is given as several node URLs. The bus connects to the first node that answers, in
the order given; when that connection is lost, aio-pika's robust connection reconnects (and
restores channels, consumers and declarations) to the next node, round the list. Quorum queues
are replicated by the broker on ``quorum_cluster_size`` nodes (3 by default, or all nodes of a
smaller cluster) when they are declared, so a queue lives on when a node dies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import aio_pika
import aiormq.abc
import aiormq.exceptions
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiormq import spec
from yarl import URL

from mercato.platform.bus.port import (
    Processor,
    RawMessage,
    Retry,
    Subscription,
    Verdict,
    check_subscription,
    fill_batch,
)
from mercato.platform.envelope import AMQP_PREFIX, CONTENT_TYPE, Envelope
from mercato.platform.settings import broker_urls
from mercato.platform.waits import within

log = structlog.get_logger(__name__)
PERSISTENT = aio_pika.DeliveryMode.PERSISTENT.value


class RabbitBus:
    prefix = AMQP_PREFIX

    def __init__(
        self, url: str | Sequence[str], namespace: str = "mercato", *, timeout: float = 15.0
    ):
        # One node or the cluster's: "amqp://u:p@h1:5672/,amqp://u:p@h2:5672/" or a list.
        self.urls = list(broker_urls(url) if isinstance(url, str) else url)
        self.url = ",".join(self.urls)
        self.where = ", ".join(_safe(u) for u in self.urls)  # for messages: no password
        self.namespace = namespace
        # Bounds every wait on the broker (connect, confirm, declare), so a broker that went
        # silent turns into a failed publish the relay retries, never a hang.
        self.timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queues: set[str] = set()
        self._publishing = asyncio.Lock()

    @property
    def exchange_name(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dead_exchange_name(self) -> str:
        return f"{self.namespace}.dead-letters"

    def queue_name(self, consumer: str) -> str:
        return f"{self.namespace}.{consumer}"

    async def connect(self) -> None:
        try:
            self._connection = await self._first_reachable()
            async with asyncio.timeout(self.timeout):
                self._publish_channel = await self._connection.channel(publisher_confirms=True)
                self._exchange = await self._publish_channel.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
        except Exception as exc:
            await self.close()
            raise ConnectionError(f"cannot reach RabbitMQ at {self.where}: {exc}") from exc

    async def _first_reachable(self) -> AbstractRobustConnection:
        """A robust connection to the first node that answers, in the order given."""
        failures: list[str] = []
        for first in range(len(self.urls)):
            connection = _FailoverConnection(self.urls, first)
            try:
                await within(self.timeout, connection.connect(timeout=self.timeout))
                return connection
            except Exception as exc:
                with contextlib.suppress(Exception):
                    await within(self.timeout, connection.close())
                if len(self.urls) == 1:
                    raise
                failures.append(f"{_safe(self.urls[first])}: {exc!r}")
        raise ConnectionError("no node answered (" + "; ".join(failures) + ")")

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._publish_channel = self._exchange = None
        if connection is not None:
            with contextlib.suppress(Exception):
                await within(self.timeout, connection.close())

    async def ping(self) -> None:
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("not connected to RabbitMQ")
        # A robust connection that lost the broker is not "closed" while it reconnects; its
        # channels are.
        if self._publish_channel is None or self._publish_channel.is_closed:
            raise ConnectionError(f"RabbitMQ at {self.where} is unavailable")

    async def queue_depth(self, consumer: str) -> int | None:
        """Messages ready in ``consumer``'s queue (not those delivered and unacknowledged), as
        a passive declaration reports it, on a channel of its own (a queue deleted meanwhile
        closes the channel it is asked on); None for a consumer this bus has not subscribed."""
        name = self.queue_name(consumer)
        if self._connection is None or self._connection.is_closed or name not in self._queues:
            return None  # not connected, or not a queue this bus has declared
        async with asyncio.timeout(self.timeout):
            async with self._connection.channel() as channel:
                queue = await channel.declare_queue(name, passive=True)
                count = queue.declaration_result.message_count
        return int(count) if count is not None else None

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        channel = self._publish_channel
        if not batch:
            return []
        if self._exchange is None or channel is None or channel.is_closed:
            log.warning("publish while RabbitMQ is unavailable", messages=len(batch))
            return [False] * len(batch)
        # Straight onto the channel underneath (aiormq): aio-pika's Message and Exchange add
        # ≈ 70 µs of CPU per message on this path and nothing it needs (docs/performance.md).
        try:
            # The bound covers a robust channel waiting for its reconnection.
            raw = await within(self.timeout, channel.get_underlay_channel())
        except Exception as exc:
            log.warning("publish while RabbitMQ is unavailable", error=repr(exc))
            return [False] * len(batch)

        nacked = False

        async def confirmed(topic: str, envelope: Envelope) -> bool:
            nonlocal nacked
            try:
                headers, body = envelope.to_binary(self.prefix)
                await self._send(raw, topic, headers, body, envelope.id)
                return True
            except Exception as exc:
                nacked |= isinstance(exc, aiormq.exceptions.DeliveryError)
                log.warning("publish not confirmed", topic=topic, error=repr(exc))
                return False

        # The coroutines start in order and queue on the channel's FIFO lock, so the frames go
        # out in batch order; the confirms come back and are awaited together (pipelined). The
        # bus lock keeps two relays' batches from interleaving.
        async with self._publishing:
            confirms = list(await asyncio.gather(*(confirmed(t, env) for t, env in batch)))
            if nacked:
                await self._renew_publish_channel(channel)
            return confirms

    async def _renew_publish_channel(self, old: AbstractChannel) -> None:
        """A nack costs the channel: the next batch goes out on a new one. Seen on RabbitMQ
        3.10 after a cluster node was killed: the channel the bus reopened on a surviving node
        had every publish routed to a quorum queue nacked for minutes (its queues had new
        leaders and took messages), while a new channel on the same node was confirmed."""
        if self._connection is None or self._publish_channel is not old:
            return
        try:
            fresh = await within(self.timeout, self._connection.channel(publisher_confirms=True))
        except Exception as exc:  # the connection is away: its robust recovery takes over
            log.warning("cannot open a new publishing channel", error=repr(exc))
            return
        self._publish_channel = fresh
        with contextlib.suppress(Exception):
            await within(self.timeout, old.close())

    async def publish_raw(self, topic: str, headers: Mapping[str, str], body: bytes) -> None:
        if self._publish_channel is None:
            raise ConnectionError("RabbitBus is not connected: call connect() first")
        async with asyncio.timeout(self.timeout):
            raw = await self._publish_channel.get_underlay_channel()
            await self._send(raw, topic, headers, body, None)

    async def send(self, consumer: str, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        """Through the default exchange, whose routing key is a queue's name: the consumer's
        queue alone gets the messages, whatever else is bound to their topics."""
        if self._connection is None or self._publish_channel is None:
            raise ConnectionError("RabbitBus is not connected: call connect() first")
        name = self.queue_name(consumer)
        # A passive declaration fails (and closes its channel) when there is no such queue:
        # the default exchange would silently drop what is sent to a queue that is not there.
        async with asyncio.timeout(self.timeout):
            probe = await self._connection.channel()
            try:
                await probe.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                raise LookupError(f"no queue {name!r}: {consumer} never subscribed") from None
            finally:
                with contextlib.suppress(Exception):
                    await probe.close()
            raw = await self._publish_channel.get_underlay_channel()

        async def confirmed(topic: str, envelope: Envelope) -> bool:
            try:
                headers, body = envelope.to_binary(self.prefix)
                await self._send(raw, name, headers, body, envelope.id, exchange="")
                return True
            except Exception as exc:
                log.warning("send not confirmed", consumer=consumer, error=repr(exc))
                return False

        async with self._publishing:
            return list(await asyncio.gather(*(confirmed(t, env) for t, env in batch)))

    async def _send(
        self,
        raw: aiormq.abc.AbstractChannel,
        topic: str,
        headers: Mapping[str, Any],
        body: bytes,
        message_id: str | None,
        exchange: str | None = None,
    ) -> None:
        """One persistent message; returns once the broker confirms it."""
        properties = spec.Basic.Properties(
            headers=dict(headers),
            content_type=CONTENT_TYPE,
            delivery_mode=PERSISTENT,
            message_id=message_id,
        )
        # A Nack (the broker did not take it) raises DeliveryError.
        await raw.basic_publish(
            body,
            exchange=self.exchange_name if exchange is None else exchange,
            routing_key=topic,
            properties=properties,
            mandatory=False,  # an event no service is bound to is simply dropped
            timeout=self.timeout,
        )

    # -- consuming -------------------------------------------------------------------------
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
        if self._connection is None:
            raise ConnectionError("RabbitBus is not connected: call connect() first")
        channel = await within(self.timeout, self._connection.channel())
        try:
            # One bound for the whole setup: a robust channel waits for a lost connection.
            async with asyncio.timeout(self.timeout):
                queue, dead = await self._declare(channel, consumer, patterns, max_deliveries)
                await channel.set_qos(prefetch_count=2 * batch_size)
                worker = _Worker(channel, processor, batch_size, max_deliveries, batch_wait, self)
                await worker.start([(queue, False), (dead, True)])
        except BaseException:
            with contextlib.suppress(Exception):
                await within(self.timeout, channel.close())
            raise
        return Subscription(stop=worker.stop, name=consumer, patterns=tuple(patterns))

    async def _declare(
        self, channel: AbstractChannel, consumer: str, patterns: Sequence[str], max_deliveries: int
    ) -> tuple[AbstractQueue, AbstractQueue]:
        name = self.queue_name(consumer)
        dead_name = f"{name}.dead"
        try:
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            dead_exchange = await channel.declare_exchange(
                self.dead_exchange_name,
                aio_pika.ExchangeType.DIRECT,
                durable=True,
            )
            dead_queue = await channel.declare_queue(
                dead_name,
                durable=True,
                arguments={"x-queue-type": "quorum", **self._no_delivery_limit()},
            )
            await dead_queue.bind(dead_exchange, routing_key=consumer)
            queue = await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    # The broker dead-letters a message once its delivery count (returns so
                    # far) exceeds the limit: limit + 1 deliveries in all.
                    "x-delivery-limit": max_deliveries - 1,
                    "x-dead-letter-exchange": self.dead_exchange_name,
                    "x-dead-letter-routing-key": consumer,
                    # At-least-once: the message leaves this queue only once the dead queue
                    # has it (the broker requires reject-publish overflow for that).
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
            for pattern in patterns:
                await queue.bind(exchange, routing_key=pattern)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise RuntimeError(
                f"RabbitMQ refused the topology of {consumer!r} ({exc}); a queue or exchange "
                "of that name exists with other arguments: delete it, or drain it, first"
            ) from exc
        self._queues.update({name, dead_name})
        return queue, dead_queue

    def _no_delivery_limit(self) -> dict[str, int]:
        """Quorum queues have no delivery limit up to RabbitMQ 3.x (where -1 would mean "drop at
        the first return") and a default of 20 from 4.0 on, where -1 lifts it: a dead letter
        the database cannot store yet must wait on the broker, not vanish."""
        transport = self._connection.transport if self._connection is not None else None
        version = transport.connection.server_properties.get("version") if transport else None
        if isinstance(version, bytes):
            version = version.decode()
        major = str(version or "3").partition(".")[0]
        return {"x-delivery-limit": -1} if major.isdigit() and int(major) >= 4 else {}

    async def delete_namespace(self) -> None:
        """Remove the queues this bus declared and the namespace's exchanges (tests use
        throwaway namespaces; AMQP itself cannot list a namespace's queues)."""
        if self._connection is None or self._connection.is_closed:
            return
        try:
            async with asyncio.timeout(self.timeout):
                channel = await self._connection.channel()
                for name in sorted(self._queues):
                    await channel.queue_delete(name, if_unused=False)
                for name in (self.exchange_name, self.dead_exchange_name):
                    await channel.exchange_delete(name)
                await channel.close()
        except Exception as exc:
            log.warning("cannot clean up the namespace", namespace=self.namespace, error=repr(exc))
            return
        self._queues.clear()


class _Worker:
    """Gathers deliveries into batches, hands them to the processor, applies its verdicts."""

    def __init__(
        self,
        channel: AbstractChannel,
        processor: Processor,
        batch_size: int,
        max_deliveries: int,
        batch_wait: float,
        bus: RabbitBus,
    ):
        self.channel = channel
        self.processor = processor
        self.batch_size = batch_size
        self.max_deliveries = max_deliveries
        self.batch_wait = batch_wait
        self.prefix = bus.prefix
        self.timeout = bus.timeout
        self.inbox: asyncio.Queue[tuple[AbstractIncomingMessage, bool]] = asyncio.Queue()
        self.consumers: list[tuple[AbstractQueue, str]] = []
        self.retries: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def start(self, queues: list[tuple[AbstractQueue, bool]]) -> None:
        for queue, exhausted in queues:

            async def deliver(
                message: AbstractIncomingMessage, exhausted: bool = exhausted
            ) -> None:
                self.inbox.put_nowait((message, exhausted))

            tag = await queue.consume(deliver, no_ack=False)
            self.consumers.append((queue, tag))
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self.stopping.is_set():
            if self.inbox.empty():  # wait for a message or the stop (two tasks)
                getter = asyncio.ensure_future(self.inbox.get())
                stopper = asyncio.ensure_future(self.stopping.wait())
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    return
                batch = [getter.result()]
            else:  # under load, what came during the last batch is the next: no wait
                batch = [self.inbox.get_nowait()]
            await fill_batch(self.inbox, batch, self.batch_size, self.batch_wait)
            verdicts = await self._verdicts([self._raw(m, exhausted) for m, exhausted in batch])
            await self._apply([m for m, _ in batch], verdicts)

    async def _verdicts(self, raw: list[RawMessage]) -> Sequence[Verdict]:
        try:
            verdicts = await self.processor(raw)
            if len(verdicts) != len(raw):
                raise RuntimeError(f"{len(verdicts)} verdicts for {len(raw)} messages")
            return verdicts
        except Exception as exc:  # never expected: the processor catches handler errors
            log.error("processor failed; the batch will be redelivered", error=repr(exc))
            return [Retry(1.0)] * len(raw)

    async def _apply(
        self, messages: list[AbstractIncomingMessage], verdicts: Sequence[Verdict]
    ) -> None:
        if not self.retries and all(verdict is None for verdict in verdicts):
            # One frame for the batch: deliveries come in order and every earlier one is
            # settled (none is held for a retry), so "this one and all before" is the batch.
            await self._settle(messages[-1].ack(multiple=True))
            return
        acks: list[Awaitable[None]] = []
        for message, verdict in zip(messages, verdicts, strict=True):
            if verdict is None:
                acks.append(self._settle(message.ack()))
            else:
                task = asyncio.create_task(self._retry_later(message, verdict.delay))
                self.retries.add(task)
                task.add_done_callback(self.retries.discard)
        await asyncio.gather(*acks)

    async def _settle(self, action: Awaitable[None]) -> None:
        # A failed ack (the connection dropped) is harmless: the broker redelivers the message
        # and the inbox skips what was already handled.
        try:
            await within(self.timeout, action)
        except Exception as exc:
            log.info("could not settle a message; the broker will redeliver it", error=repr(exc))

    def _raw(self, message: AbstractIncomingMessage, exhausted: bool) -> RawMessage:
        headers = dict(message.headers or {})
        count = headers.get("x-delivery-count")
        returns = count if isinstance(count, int) and not isinstance(count, bool) else 0
        # A dead-lettered message spent max_deliveries deliveries in the consumer's queue
        # before it came to the dead queue.
        attempt = returns + (self.max_deliveries if exhausted else 1)
        return RawMessage(
            topic=message.routing_key or "",
            headers=headers,
            body=message.body,
            prefix=self.prefix,
            attempt=attempt,
            exhausted=exhausted,
        )

    async def _retry_later(self, message: AbstractIncomingMessage, delay: float) -> None:
        # Backoff: hold the message unacknowledged for the delay (a stop cuts it short), then
        # hand it back. Reject, not nack: from RabbitMQ 4.3 only a reject counts as a failed
        # delivery (x-delivery-count, the delivery limit); a nack means "not processed".
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the task's own
        # cancellation when the stop comes at that moment.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.stopping.wait()
        await self._settle(message.reject(requeue=True))

    async def stop(self) -> None:
        if self.stopping.is_set():
            return
        # Take no more deliveries; the batch in hand finishes and its verdicts are applied. (A
        # closed channel has no consumers to cancel: closing it below keeps a robust one from
        # restoring them, and cancelling would wait for its reconnection.)
        if not self.channel.is_closed:
            for queue, tag in self.consumers:
                with contextlib.suppress(Exception):
                    await within(self.timeout, queue.cancel(tag))
        self.stopping.set()
        if self.task is not None:
            await self.task
        # What was prefetched but never handed over goes back untouched ("not processed").
        while not self.inbox.empty():
            message, _ = self.inbox.get_nowait()
            await self._settle(message.nack(requeue=True))
        await asyncio.gather(*self.retries)
        # Closing the channel returns anything still unacknowledged to its queue.
        with contextlib.suppress(Exception):
            await within(self.timeout, self.channel.close())


class _FailoverConnection(aio_pika.RobustConnection):
    """A robust connection to one node of a cluster at a time. aio-pika reconnects to one URL;
    this moves it to the next node's at each failed attempt and each loss of the connection
    (both end in ``_on_connection_close``), so a dead node is left for a live one."""

    def __init__(self, urls: Sequence[str], first: int = 0):
        super().__init__(URL(urls[first]))
        self.nodes = [URL(u) for u in urls]
        self.node = first

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if len(self.nodes) > 1 and not self._close_called:
            self.node = (self.node + 1) % len(self.nodes)
            self.url = self.nodes[self.node]
            log.warning("RabbitMQ connection lost or refused; trying the next node", next=str(self))
        await super()._on_connection_close(closing)


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{creds.partition(':')[0]}{at}{host}" if at else url
