"""The storefront journey with every service its own ``mercato serve`` process, on RabbitMQ and
PostgreSQL (a database per service), driven only through the gateway's HTTP port."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.platform.settings import Settings
from tests.demo.probe import ROOT, drop_namespace
from tests.e2e.test_storefront import ADMIN, STOREFRONT, journey, outbox_reader, separate_carts
from tests.runtime.test_processes import Served

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
async def gateway(
    postgres_template: str, rabbitmq_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "MERCATO_BROKER_URL": rabbitmq_url,
        "MERCATO_DATABASE_URL": postgres_template,
        "MERCATO_DATA_DIR": str(tmp_path),
        "MERCATO_RELAY_POLL_INTERVAL": "0.05",
        "MERCATO_RETRY_BASE_DELAY": "0.05",
        "MERCATO_DEMO_CATALOG": "0",
        "MERCATO_ADMIN_EMAIL": ADMIN["email"],
        "MERCATO_ADMIN_PASSWORD": ADMIN["password"],
        "MERCATO_LOG_FORMAT": "json",
    }
    served = {name: Served(name, env, tmp_path / f"{name}.log") for name in STOREFRONT}
    targets = ",".join(f"{n}=127.0.0.1:{s.grpc_port}" for n, s in served.items())
    for process in served.values():
        process.env = {**env, "MERCATO_GRPC_TARGETS": targets}
    try:
        for process in served.values():
            process.start()
        await asyncio.gather(*(p.ready() for p in served.values()))
        base = f"http://127.0.0.1:{served['gateway'].http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            yield http
        for name, process in served.items():
            assert await process.stop() == 0, process.logs.read_text()
            assert "Traceback" not in process.logs.read_text(), name
            assert "4242424242424242" not in process.logs.read_text(), name
    finally:
        for process in served.values():
            process.kill()
        await drop_namespace(rabbitmq_url, "mercato", ["catalog", "cart", "payment"])


async def test_the_storefront_journey_as_processes_on_rabbitmq_and_postgres(
    gateway: httpx.AsyncClient, postgres_template: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=postgres_template, data_dir=tmp_path)
    events = outbox_reader(settings, "cart")
    try:
        await journey(gateway, events, timeout=20)
        # Nothing about one user's cart is reachable by another, across processes too.
        await separate_carts(gateway)
    finally:
        await events.engine.dispose()  # type: ignore[attr-defined]
