"""The EventBus port and its adapters: in-process, RabbitMQ, NATS JetStream, Kafka."""

from mercato.platform.bus.port import (
    ACK,
    ALL_EVENTS,
    EventBus,
    Processor,
    RawMessage,
    Retry,
    Subscription,
    Verdict,
    topic_matches,
    topic_of,
)

__all__ = [
    "ACK",
    "ALL_EVENTS",
    "EventBus",
    "Processor",
    "RawMessage",
    "Retry",
    "Subscription",
    "Verdict",
    "topic_matches",
    "topic_of",
]
