"""A bus given several broker nodes: it starts on the first that answers and, on RabbitMQ,
moves to the next when its node goes away; NATS streams are kept in the configured number of
copies, and a single server refuses more than one with an error naming the setting. (The
clusters themselves, with a node killed under load, are in tests/clusters/.)"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlparse

import aio_pika
import pytest

from mercato.platform.bus.nats import NatsBus
from mercato.platform.bus.port import topic_of
from mercato.platform.bus.rabbitmq import RabbitBus
from tests.conftest import eventually
from tests.platform.test_bus_contract import ping
from tests.platform.test_outbox import CuttableProxy
from tests.platform.test_rabbitmq_bus import PATTERN, Processes, Recorder, processes

__all__ = ["processes"]  # the fixture, imported to be used here


async def _dead_port() -> int:
    """A local port where nothing listens (connections are refused at once)."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


async def test_rabbitmq_starts_on_the_first_node_that_answers_and_moves_on_when_it_dies(
    processes: Processes,
) -> None:
    target = urlparse(processes.url)
    proxy = CuttableProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await proxy.open()
    try:
        credentials = target.netloc.rpartition("@")[0]
        node = f"amqp://{credentials}@127.0.0.1:{{}}{target.path or '/'}"
        dead, through_proxy = node.format(await _dead_port()), node.format(proxy.port)
        # The last "node" is the broker itself, reached directly: where the bus must go next.
        bus = await processes.start(f"{dead},{through_proxy},{processes.url}")
        assert bus._connection is not None and bus._connection.url.port == proxy.port
        seen = Recorder()
        await bus.subscribe("svc-a", [PATTERN], seen)
        first = ping(1)
        assert await bus.publish([(topic_of(first), first)]) == [True]
        await eventually(lambda: len(seen.seen) == 1)

        await proxy.cut()  # the node dies: connections dropped, reconnections refused

        async def published_again() -> bool:
            again = ping(2)
            return await bus.publish([(topic_of(again), again)]) == [True]

        await eventually(published_again, timeout=30, interval=0.5)
        assert bus._connection.url.port == (target.port or 5672)
        # The subscription came along: its consumer was restored on the new node.
        await eventually(lambda: len(seen.seen) >= 2, timeout=30)
    finally:
        await proxy.close()


async def test_rabbitmq_with_no_node_answering_names_every_node_without_passwords() -> None:
    first, second = await _dead_port(), await _dead_port()
    bus = RabbitBus(f"amqp://u:secret@127.0.0.1:{first}/,127.0.0.1:{second}", timeout=3.0)
    with pytest.raises(ConnectionError, match="no node answered") as caught:
        await asyncio.wait_for(bus.connect(), 20)
    assert f":{first}/" in str(caught.value) and f":{second}/" in str(caught.value)
    assert "secret" not in str(caught.value)


async def test_nats_starts_on_a_server_that_answers(nats_url: str) -> None:
    bus = NatsBus(
        f"nats://127.0.0.1:{await _dead_port()},{nats_url}",
        namespace=f"mtest{uuid.uuid4().hex[:8]}",
    )
    await bus.connect()
    try:
        await bus.ping()
        assert bus._nc is not None and bus._nc.connected_url is not None
        assert bus._nc.connected_url.port == (urlparse(nats_url).port or 4222)
    finally:
        await bus.delete_namespace()
        await bus.close()


async def test_nats_replicas_beyond_the_servers_are_refused_naming_the_setting(
    nats_url: str,
) -> None:
    bus = NatsBus(nats_url, namespace=f"mtest{uuid.uuid4().hex[:8]}", replicas=3)
    with pytest.raises(RuntimeError, match=r"3 replica.*MERCATO_NATS_REPLICAS"):
        await bus.connect()
    assert bus._nc is None, "closed again: nothing half-open"


async def test_rabbitmq_publishes_on_a_new_channel_after_a_nack(processes: Processes) -> None:
    """A channel the broker nacked may go on nacking (seen on RabbitMQ 3.10 after a cluster
    node died): the batch after a nack goes out on a new channel."""
    bus = await processes.start()
    await bus.subscribe("svc-a", [PATTERN], Recorder())
    full = f"{processes.namespace}.full"
    async with await aio_pika.connect(processes.url) as admin:
        channel = await admin.channel()
        refusing = await channel.declare_queue(  # gone with this connection, whatever happens
            full, exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        await refusing.bind(bus.exchange_name, routing_key="#")
        old = bus._publish_channel
        nacked = ping(1)
        assert await bus.publish([(topic_of(nacked), nacked)]) == [False]
        assert bus._publish_channel is not old and old is not None and old.is_closed
        await refusing.delete(if_unused=False)
    again = ping(2)
    assert await bus.publish([(topic_of(again), again)]) == [True]
