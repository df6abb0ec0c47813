"""Messages no service can handle, published raw to the exchange with routing keys that reach
the services' queues: each must end as a dead letter of every service whose queue it
reached. Each carries a marker of its own in its body, so its dead letters can be found."""

from __future__ import annotations

import json
import uuid

from mercato.platform.bus.port import topic_matches
from mercato.platform.bus.rabbitmq import RabbitBus
from mercato.platform.envelope import AMQP_PREFIX, Envelope
from mercato.services import load_service
from tests.faults.system import CONSUMERS

# (what is wrong, routing key, the event type its headers name)
POISON = (
    ("not JSON", "order.OrderCreated", "OrderCreated"),
    ("not a CloudEvent", "cart.CartCheckedOut", None),
    ("a NUL byte", "order.OrderCancelled", "OrderCancelled"),
    ("a NUL byte", "inventory.StockUpdated", "StockUpdated"),
    ("a payload failing its model", "catalog.ProductUpdated", "ProductUpdated"),
    ("a payload failing its model", "order.OrderStatusChanged.RESERVED", "OrderStatusChanged"),
    ("an unknown event type", "order.OrderCreated", "OrderTeleported"),
)


def reached_by(topic: str) -> set[str]:
    """The services whose queue a message of ``topic`` lands in."""
    return {
        name
        for name in CONSUMERS
        if any(topic_matches(h.pattern, topic) for h in load_service(name).handlers)
    }


def message(
    kind: str, topic: str, event_type: str | None, marker: str
) -> tuple[dict[str, str], bytes]:
    """Headers and body of one poison message."""
    publisher = topic.split(".")[0]
    data: dict[str, object] = {"orderId": marker, "productId": marker}
    if kind == "a payload failing its model":
        data = {name: [marker] for name in ("orderId", "productId", "status")}  # not strings
    envelope = Envelope(type=event_type or "Nothing", source=f"mercato/{publisher}", data=data)
    headers, body = envelope.to_binary(AMQP_PREFIX)
    if kind == "not JSON":
        return headers, f"this is not JSON {marker}".encode()
    if kind == "not a CloudEvent":
        return {}, json.dumps(data).encode()
    if kind == "a NUL byte":
        # A raw NUL inside a JSON string: not JSON, and not storable in PostgreSQL TEXT as is.
        return headers, b'{"orderId": "' + marker.encode() + b'\x00"}'
    return headers, body  # its model fails (fields missing), or its type is unknown


async def publish_poison(broker_url: str) -> dict[str, set[str]]:
    """Publish every poison message once; marker → the services that must keep it."""
    bus = RabbitBus(broker_url)
    await bus.connect()
    expected: dict[str, set[str]] = {}
    try:
        for kind, topic, event_type in POISON:
            marker = f"poison-{uuid.uuid4().hex[:12]}"
            headers, body = message(kind, topic, event_type, marker)
            await bus.publish_raw(topic, headers, body)
            expected[marker] = reached_by(topic)
    finally:
        await bus.close()
    return expected
