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

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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


def check_subscription(
    consumer: str, patterns: Sequence[str], batch_size: int, max_deliveries: int
) -> None:
    """The arguments every adapter's ``subscribe`` refuses (``ValueError``)."""
    if not consumer or not patterns or batch_size < 1 or max_deliveries < 1:
        raise ValueError(
            "subscribe needs a consumer name, patterns, batch_size >= 1 and max_deliveries >= 1"
        )


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
    ) -> Subscription:
        """Start consuming into ``consumer``'s durable queue (shared by its replicas)."""
