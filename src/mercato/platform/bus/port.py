"""The EventBus port.

A bus moves events between services; it knows nothing of databases or handlers. Publishing
returns only once the broker has the message (publisher confirms), so the outbox relay can mark
a row sent. Consuming hands batches of raw messages to a ``Processor`` (the platform's inbox
consumer) and carries out its verdict per message: acknowledge, or redeliver after a delay.

Topics are dotted words, ``<publishing service>.<EventType>[.<route value>]`` (the route value
is the field the spec routes by: OrderStatusChanged carries its new status), so a queue is bound
to exactly what its service handles. Patterns use AMQP's wildcards: ``*`` one word, ``#`` any.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from mercato.platform.envelope import Envelope

# The one pattern that binds a queue to every topic (the audit log's): one binding on RabbitMQ,
# one filter on NATS (``#`` → ``>``), a match-all on the in-process bus.
ALL_EVENTS = "#"

# Event types whose topic carries one payload field, so consumers can bind to one value.
ROUTE_BY: dict[str, str] = {"OrderStatusChanged": "status"}


def topic_of(envelope: Envelope) -> str:
    service = envelope.source.rpartition("/")[2] or "unknown"
    topic = f"{service}.{envelope.type}"
    route_field = ROUTE_BY.get(envelope.type)
    if route_field is not None:
        topic += f".{envelope.data.get(route_field, '_')}"
    return topic


def pattern_for(event_type: str, route_value: str | None = None) -> str:
    """The binding pattern for one event type, optionally one value of its route field."""
    if event_type in ROUTE_BY:
        return f"*.{event_type}.{route_value or '*'}"
    if route_value is not None:
        raise ValueError(f"{event_type} is not routed by any field")
    return f"*.{event_type}"


def topic_matches(pattern: str, topic: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more."""
    return _match(pattern.split("."), topic.split("."))


def _match(pat: list[str], words: list[str]) -> bool:
    if not pat:
        return not words
    head, rest = pat[0], pat[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


MAX_BATCH_WAIT = 5.0  # seconds: the longest ``batch_wait`` a subscription may ask for


def check_subscription(
    consumer: str,
    patterns: Sequence[str],
    batch_size: int,
    max_deliveries: int,
    batch_wait: float = 0.0,
) -> None:
    """The arguments every adapter's ``subscribe`` refuses (``ValueError``)."""
    if not consumer or not patterns or batch_size < 1 or max_deliveries < 1:
        raise ValueError(
            "subscribe needs a consumer name, patterns, batch_size >= 1 and max_deliveries >= 1"
        )
    if not (math.isfinite(batch_wait) and 0 <= batch_wait <= MAX_BATCH_WAIT):
        raise ValueError(f"batch_wait is seconds from 0 to {MAX_BATCH_WAIT:g}")


T = TypeVar("T")


async def fill_batch(queue: asyncio.Queue[T], batch: list[T], size: int, wait: float) -> None:
    """Add to ``batch`` what ``queue`` holds, up to ``size``; with a ``wait``, also what comes
    within that many seconds (the RabbitMQ adapter's ``batch_wait``)."""
    while len(batch) < size and not queue.empty():
        batch.append(queue.get_nowait())
    if wait <= 0 or len(batch) >= size:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while len(batch) < size:
        left = deadline - loop.time()
        if left <= 0:
            return
        try:
            # A get cancelled by the timeout leaves its item in the queue.
            async with asyncio.timeout(left):
                batch.append(await queue.get())
        except TimeoutError:
            return
        while len(batch) < size and not queue.empty():
            batch.append(queue.get_nowait())


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as it came off the broker: CloudEvents binary mode, not yet decoded."""

    topic: str
    headers: Mapping[str, Any]
    body: bytes
    prefix: str
    attempt: int = 1
    # The broker gave up on it (its own delivery limit, reached only when a handler keeps
    # killing its process): the consumer stores it as a dead letter without handling it.
    exhausted: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float


ACK = None
Verdict = Retry | None
Processor = Callable[[Sequence[RawMessage]], Awaitable[list[Verdict]]]


@dataclass(slots=True)
class Subscription:
    """A running consumer; ``stop`` lets the batch in hand finish, then stops taking more."""

    stop: Callable[[], Awaitable[None]]
    name: str = ""
    patterns: tuple[str, ...] = field(default_factory=tuple)


class EventBus(Protocol):
    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the broker cannot be reached."""

    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        """Publish in order; True for each message the broker confirmed."""

    async def publish_raw(self, topic: str, headers: Mapping[str, str], body: bytes) -> None:
        """Publish bytes as they are (for tools and tests: a malformed message, say)."""

    async def send(self, consumer: str, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        """Publish to ``consumer``'s queue alone, past every binding (a replay: stored events
        delivered again to one service). True for each message its queue took; raises
        ``LookupError`` when the consumer has no queue (it never subscribed)."""

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
        """Start consuming into ``consumer``'s durable queue (shared by its replicas), in
        batches of up to ``batch_size``: what the broker has at hand, and with a
        ``batch_wait``, what comes within that many seconds of a batch's first message (fewer,
        larger transactions for a consumer nobody waits on; the in-process bus, whose publish
        waits for its consumers, does not wait)."""
