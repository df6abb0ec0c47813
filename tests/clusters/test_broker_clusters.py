"""A broker node SIGKILLed under the saga's load, on a 3-node cluster started here: NATS
JetStream with every stream in 3 replicas, and RabbitMQ with quorum queues on all 3 nodes.
Nothing is lost (see tests/clusters/saga.py for what is checked).

A few seconds of load each by default; MERCATO_LONG=1 runs a minute of load, with the killed
node started again a third of the way after its death."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from tests.clusters.nodes import NatsCluster, Node, RabbitCluster
from tests.clusters.saga import saga_under_load
from tests.conftest import LONG

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.slow]


SECONDS = 60.0 if LONG else 6.0


@pytest.mark.long  # a minute and more, most of it the cluster's start and its streams' moves
async def test_a_nats_node_killed_under_load_loses_nothing_with_r3_streams(tmp_path: Path) -> None:
    cluster = NatsCluster(tmp_path / "nodes")

    async def the_stream_leader() -> Node:
        # Its replicas must elect another leader and lose nothing.
        nc = Client()
        await nc.connect(cluster.url.split(","))
        try:
            info = await nc.jetstream().stream_info("MERCATO_EVENTS")
        finally:
            await nc.close()
        assert info.config.num_replicas == 3 and info.cluster is not None
        assert len(info.cluster.replicas or []) == 2, "a leader and two replicas"
        return next(n for n in cluster.nodes if n.name == info.cluster.leader)

    figures = await killed_under_load(cluster, tmp_path, the_stream_leader, nats_replicas=3)
    print("NATS cluster:", json.dumps(figures))


async def test_a_rabbitmq_node_killed_under_load_loses_nothing_with_quorum_queues(
    tmp_path: Path,
) -> None:
    cluster = RabbitCluster(tmp_path / "nodes")

    async def replicated_on_every_node() -> None:
        everyone = sorted(n.name for n in cluster.nodes)
        members = await asyncio.to_thread(cluster.members)
        assert members and all(
            name.endswith("(quorum)") and nodes == everyone for name, nodes in members.items()
        ), members

    async def the_first_node() -> Node:
        # The bus is connected to it (the first URL) and declared the queues there, so it
        # leads them.
        return cluster.nodes[0]

    figures = await killed_under_load(
        cluster, tmp_path, the_first_node, before_load=replicated_on_every_node
    )
    print("RabbitMQ cluster:", json.dumps(figures))


async def killed_under_load(
    cluster: NatsCluster | RabbitCluster,
    tmp_path: Path,
    victim: Callable[[], Awaitable[Node]],
    **settings: Any,
) -> dict[str, Any]:
    """Start the cluster, run the saga's load on it and SIGKILL the node ``victim`` picks a
    third of the way in (the long variant starts it again later); the cluster is stopped
    whatever happens. Returns the load's figures."""
    restarts: list[asyncio.Task[None]] = []

    async def kill() -> str:
        node = await victim()
        node.kill()
        if LONG:
            restarts.append(asyncio.create_task(_restart_later(cluster, node)))
        return node.name

    try:
        await cluster.start()
        figures = await saga_under_load(
            tmp_path / "data", cluster.url, kill, seconds=SECONDS, **settings
        )
        await asyncio.gather(*restarts)
        return figures
    finally:
        for task in restarts:
            task.cancel()
        cluster.stop()


async def _restart_later(cluster: NatsCluster | RabbitCluster, node: Node) -> None:
    await asyncio.sleep(SECONDS / 3)
    await cluster.restart(node)
