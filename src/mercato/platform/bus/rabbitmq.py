"""The RabbitMQ adapter (aio-pika).

Raw aio-pika rather than FastStream: the inbox consumer handles a *batch* of messages in one
database transaction and returns a verdict per message, and the relay pipelines publisher
confirms for a whole batch; FastStream's one-message-per-handler model hides both.

Topology, every name under the namespace (``mercato`` by default):
- ``{ns}.events``: a durable topic exchange; routing keys are the platform's topics.
- ``{ns}.{consumer}``: one durable quorum queue per consuming service, shared by its replicas
  (competing consumers), bound to exactly the service's patterns. ``x-delivery-limit`` makes
  the broker give up on a message that keeps coming back unacknowledged (a handler that kills
  its process); it then goes through ``{ns}.dead-letters`` (direct) to ``{ns}.{consumer}.dead``,
  which the subscription also consumes, handing those messages over as ``exhausted`` so the
  inbox consumer stores them as dead letters with the rest.
Messages are persistent, in CloudEvents binary mode (``cloudEvents:*`` headers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from mercato.platform.bus.port import Processor, RawMessage, Retry, Subscription, next_batch
from mercato.platform.envelope import AMQP_PREFIX, CONTENT_TYPE, Envelope

log = structlog.get_logger(__name__)


class RabbitBus:
    prefix = AMQP_PREFIX

    def __init__(self, url: str, namespace: str = "mercato", *, timeout: float = 15.0):
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queues: set[str] = set()
        self._lock = asyncio.Lock()

    @property
    def exchange_name(self) -> str:
        return f"{self.namespace}.events"

    @property
    def dead_exchange_name(self) -> str:
        return f"{self.namespace}.dead-letters"

    async def connect(self) -> None:
        try:
            self._connection = await aio_pika.connect_robust(self.url, timeout=self.timeout)
        except Exception as exc:
            raise ConnectionError(f"cannot reach RabbitMQ at {_safe(self.url)}: {exc}") from exc
        self._publish_channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._publish_channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = None

    async def ping(self) -> None:
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("not connected to RabbitMQ")
        if self._publish_channel is None or self._publish_channel.is_closed:
            raise ConnectionError("RabbitMQ channel is closed")

    def _message(self, headers: Mapping[str, Any], body: bytes, event_id: str | None) -> Any:
        return aio_pika.Message(
            body,
            headers=dict(headers),
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=event_id,
        )

    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        exchange = self._exchange
        if exchange is None:
            return [False] * len(batch)

        async def one(topic: str, envelope: Envelope) -> bool:
            headers, body = envelope.to_binary(self.prefix)
            try:
                await exchange.publish(
                    self._message(headers, body, envelope.id),
                    routing_key=topic,
                    timeout=self.timeout,
                )
                return True
            except Exception as exc:
                log.warning("publish not confirmed", topic=topic, error=str(exc))
                return False

        # Publishes go out in order on one channel; their confirms are awaited together.
        async with self._lock:
            tasks = [asyncio.create_task(one(topic, env)) for topic, env in batch]
            return list(await asyncio.gather(*tasks))

    async def publish_raw(self, topic: str, headers: Mapping[str, str], body: bytes) -> None:
        if self._exchange is None:
            raise ConnectionError("not connected to RabbitMQ")
        await self._exchange.publish(
            self._message(headers, body, None), routing_key=topic, timeout=self.timeout
        )

    async def subscribe(
        self,
        consumer: str,
        patterns: Sequence[str],
        processor: Processor,
        *,
        batch_size: int = 100,
        max_deliveries: int = 10,
    ) -> Subscription:
        if self._connection is None:
            raise ConnectionError("not connected to RabbitMQ")
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=batch_size * 2)
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dead_exchange = await channel.declare_exchange(
            self.dead_exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
        )
        queue_name = f"{self.namespace}.{consumer}"
        dead_name = f"{queue_name}.dead"
        dead_queue = await channel.declare_queue(
            dead_name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_queue.bind(dead_exchange, routing_key=consumer)
        queue = await channel.declare_queue(
            queue_name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": max_deliveries,
                "x-dead-letter-exchange": self.dead_exchange_name,
                "x-dead-letter-routing-key": consumer,
            },
        )
        for pattern in patterns:
            await queue.bind(exchange, routing_key=pattern)
        self._queues.update({queue_name, dead_name})
        worker = _Worker(channel, processor, batch_size, self.prefix)
        await worker.start([(queue, False), (dead_queue, True)])
        return Subscription(stop=worker.stop, name=consumer, patterns=tuple(patterns))

    async def delete_namespace(self) -> None:
        """Remove this namespace's queues and exchanges (tests use throwaway namespaces)."""
        if self._connection is None or self._connection.is_closed:
            return
        channel = await self._connection.channel()
        for name in sorted(self._queues):
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        for name in (self.exchange_name, self.dead_exchange_name):
            with contextlib.suppress(Exception):
                await channel.exchange_delete(name)
        with contextlib.suppress(Exception):
            await channel.close()


class _Worker:
    """Gathers deliveries into batches, hands them to the processor, applies its verdicts."""

    def __init__(
        self, channel: AbstractChannel, processor: Processor, batch_size: int, prefix: str
    ):
        self.channel = channel
        self.processor = processor
        self.batch_size = batch_size
        self.prefix = prefix
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
            batch = await next_batch(self.inbox, self.stopping, self.batch_size)
            if batch is None:
                return
            raw = [self._raw(message, exhausted) for message, exhausted in batch]
            try:
                verdicts = await self.processor(raw)
            except Exception as exc:  # never expected: the processor catches handler errors
                log.error("processor failed; messages will be redelivered", error=str(exc))
                verdicts = [Retry(1.0)] * len(batch)
            for (message, _), verdict in zip(batch, verdicts, strict=True):
                if verdict is None:
                    with contextlib.suppress(Exception):
                        await message.ack()
                else:
                    task = asyncio.create_task(self._requeue_later(message, verdict.delay))
                    self.retries.add(task)
                    task.add_done_callback(self.retries.discard)

    def _raw(self, message: AbstractIncomingMessage, exhausted: bool) -> RawMessage:
        headers = dict(message.headers or {})
        count = headers.get("x-delivery-count")
        attempt = int(count) + 1 if isinstance(count, int) else 1
        return RawMessage(
            topic=message.routing_key or "",
            headers=headers,
            body=message.body,
            prefix=self.prefix,
            attempt=attempt,
            exhausted=exhausted,
        )

    async def _requeue_later(self, message: AbstractIncomingMessage, delay: float) -> None:
        # Backoff: hold the message unacknowledged for the delay, then hand it back; the quorum
        # queue counts the delivery (x-delivery-count).
        await asyncio.sleep(delay)
        with contextlib.suppress(Exception):
            await message.nack(requeue=True)

    async def stop(self) -> None:
        for queue, tag in self.consumers:
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
        self.stopping.set()
        if self.task is not None:
            await self.task
        for task in list(self.retries):
            task.cancel()
        # Closing the channel returns every unacknowledged message to its queue.
        with contextlib.suppress(Exception):
            await self.channel.close()


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{creds.partition(':')[0]}{at}{host}" if at else url
