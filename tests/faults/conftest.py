"""The fault suite's fixtures: its own RabbitMQ node (once per session), the system on it
with its shoppers (once per module, shared by the cases in sequence), and the figures of
every case, printed at the end of the run."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from mercato.bench.client import Client
from tests.conftest import fresh_databases
from tests.faults.broker import NodeFailed, RabbitNode, script
from tests.faults.invariants import Expected
from tests.faults.load import Shoppers, set_up
from tests.faults.system import System, running

NODE, PORT = "mf1", 24672  # the suite's ports: 24672 AMQP, 24673 Erlang distribution
SETTINGS = {
    "carrier_delay": "1",  # orders complete (and returns come back) within the case
    # 14 processes, each its pool and its relay's lock, on a server that allows 100 in all
    "database_pool_size": "2",
    "relay_poll_interval": "0.1",
    "auth_rate_limit": "100000",
    "access_token_ttl": "7200",
    "log_level": "warning",
}
FIGURES: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
def faults_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitNode]:
    if script("rabbitmq-server") is None:
        message = "rabbitmq-server is not installed: the fault suite needs a node of its own"
        if os.environ.get("MERCATO_REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (MERCATO_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    node = RabbitNode(NODE, PORT, tmp_path_factory.mktemp("rabbitmq"))
    try:
        node.start()
    except NodeFailed as exc:
        node.stop()
        pytest.fail(str(exc))
    yield node
    node.stop()


@dataclass
class Shop:
    """The system under faults, its broker, its shoppers and what the cases did so far."""

    system: System
    broker: RabbitNode
    shoppers: Shoppers
    expected: Expected = field(default_factory=Expected)
    # Subjects of the violations earlier cases failed on (invariants.settle leaves them out).
    broken: set[str] = field(default_factory=set)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(
    faults_broker: RabbitNode, postgres_server: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Shop]:
    data_dir: Path = tmp_path_factory.mktemp("faults")
    started = time.monotonic()
    async with (
        fresh_databases(postgres_server) as template,
        running(faults_broker.url, template, data_dir, **SETTINGS) as system,
        Client(system.base_url, timeout=30) as http,
    ):
        expected = Expected()
        people = await set_up(http, expected)
        FIGURES.append({"case": "start and set up", "seconds": time.monotonic() - started})
        yield Shop(system, faults_broker, people, expected)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    write = terminalreporter.write_line
    write("")
    write(
        "fault suite: | case | orders placed | declined | cancelled | by the customer | "
        "checkout errors (retried) | settled after (s) | case (s) |"
    )
    for f in FIGURES:
        write(
            "| {case} | {placed} | {declined} | {cancelled} | {by_customer} | {retries} | "
            "{settled} | {seconds:.0f} |".format(
                **{
                    "placed": "",
                    "declined": "",
                    "cancelled": "",
                    "by_customer": "",
                    "retries": "",
                    "settled": "",
                    **f,
                }
            )
        )
