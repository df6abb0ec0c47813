"""The bus the configuration asks for."""

from __future__ import annotations

from mercato.platform.bus.port import EventBus
from mercato.platform.settings import Settings


def create_bus(settings: Settings) -> EventBus:
    kind = settings.broker_kind
    if kind == "memory":
        from mercato.platform.bus.memory import MemoryBus

        return MemoryBus()
    if kind == "amqp":
        from mercato.platform.bus.rabbitmq import RabbitBus

        return RabbitBus(settings.broker_urls)
    if kind == "kafka":
        from mercato.platform.bus.kafka import KafkaBus

        return KafkaBus(
            settings.broker_urls,
            idempotence=settings.kafka_idempotence,
            partitions=settings.kafka_partitions,
            replicas=settings.kafka_replicas,
        )
    from mercato.platform.bus.nats import NatsBus

    return NatsBus(settings.broker_urls, replicas=settings.nats_replicas)
