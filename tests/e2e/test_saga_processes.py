"""The saga's scenarios with every service its own ``mercato serve`` process, on RabbitMQ and
PostgreSQL (a database per service), driven only through the gateway's HTTP port (the
scenarios of ``test_saga``; scenario 6 needs a system without shipping and stays embedded)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.platform.settings import Settings
from mercato.services import ordered_names
from tests.demo.probe import ROOT, drop_namespace
from tests.e2e import test_saga as saga
from tests.runtime.test_processes import Served

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


@pytest.fixture
async def shop(
    postgres_template: str, rabbitmq_url: str, tmp_path: Path
) -> AsyncIterator[saga.Shop]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "MERCATO_BROKER_URL": rabbitmq_url,
        "MERCATO_DATABASE_URL": postgres_template,
        "MERCATO_DATA_DIR": str(tmp_path),
        "MERCATO_RELAY_POLL_INTERVAL": "0.05",
        "MERCATO_RETRY_BASE_DELAY": "0.05",
        "MERCATO_DEMO_CATALOG": "0",
        "MERCATO_CARRIER_DELAY": "never",
        "MERCATO_ADMIN_EMAIL": saga.ADMIN["email"],
        "MERCATO_ADMIN_PASSWORD": saga.ADMIN["password"],
        "MERCATO_LOG_FORMAT": "json",
    }
    names = ordered_names()
    served = {name: Served(name, env, tmp_path / f"{name}.log") for name in names}
    targets = ",".join(f"{n}=127.0.0.1:{s.grpc_port}" for n, s in served.items())
    for process in served.values():
        process.env = {**env, "MERCATO_GRPC_TARGETS": targets}
    try:
        for process in served.values():
            process.start()
        await asyncio.gather(*(p.ready() for p in served.values()))
        base = f"http://127.0.0.1:{served['gateway'].http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            opened = saga.Shop(http, Settings(database_url=postgres_template, data_dir=tmp_path))
            opened.admin = await opened.sign_in(saga.ADMIN["email"], saga.ADMIN["password"])
            try:
                yield opened
            finally:
                for engine in opened.engines.values():
                    await engine.dispose()
        for name, process in served.items():
            assert await process.stop() == 0, process.logs.read_text()
            assert "Traceback" not in process.logs.read_text(), name
            assert "4242424242424242" not in process.logs.read_text(), name
    finally:
        for process in served.values():
            process.kill()
        await drop_namespace(rabbitmq_url, "mercato", [n for n in names if n != "gateway"])


async def test_the_saga_scenarios_as_processes_on_rabbitmq_and_postgres(shop: saga.Shop) -> None:
    await saga.test_scenarios_1_to_5_created_paid_reserved_delivering_completed(shop)
    await saga.test_scenario_7_cancel_while_delivering_refunds_and_orders_a_return(shop)
    await saga.test_scenario_8_a_failed_payment_cancels_and_releases(shop)
    await saga.test_scenario_9_a_failed_reservation_cancels_and_refunds(shop)
    await saga.test_scenario_10_a_failed_delivery_cancels_refunds_and_returns(shop)
    await saga.test_placing_is_idempotent_and_orders_are_private(shop)
    await saga.test_the_stream_sends_every_change_until_final(shop)
