"""The saga's scenarios with every service its own ``mercato serve`` process, on RabbitMQ or
Kafka and PostgreSQL (a database per service), driven only through the gateway's HTTP port (the
scenarios of ``test_saga``; scenario 6 needs a system without shipping and stays embedded)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.platform.settings import Settings
from mercato.services import ordered_names
from tests.e2e import test_saga as saga
from tests.e2e.processes import serving

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@pytest.fixture(
    # Kafka's variant is long: Tansu takes 5 s to let each consumer group in.
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("kafka", marks=pytest.mark.long),
    ]
)
async def shop(
    request: pytest.FixtureRequest, postgres_template: str, tmp_path: Path
) -> AsyncIterator[saga.Shop]:
    broker = {"broker_url": request.getfixturevalue(f"{request.param}_url")}
    if request.param == "kafka":
        from tests.conftest import KAFKA_IDEMPOTENCE

        broker["kafka_idempotence"] = str(int(KAFKA_IDEMPOTENCE))
    async with (
        serving(
            ordered_names(),
            postgres_template=postgres_template,
            data_dir=tmp_path,
            admin=saga.ADMIN,
            carrier_delay="never",
            database_pool_size="3",  # PostgreSQL's 100 connections are shared
            **broker,
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=20) as http,
    ):
        opened = saga.Shop(http, Settings(database_url=postgres_template, data_dir=tmp_path))
        opened.admin = await opened.sign_in(saga.ADMIN["email"], saga.ADMIN["password"])
        try:
            yield opened
        finally:
            for engine in opened.engines.values():
                await engine.dispose()


async def test_the_saga_scenarios_as_processes_on_a_broker_and_postgres(shop: saga.Shop) -> None:
    await saga.test_scenarios_1_to_5_created_paid_reserved_delivering_completed(shop)
    await saga.test_scenario_7_cancel_while_delivering_refunds_and_orders_a_return(shop)
    await saga.test_scenario_8_a_failed_payment_cancels_and_releases(shop)
    await saga.test_scenario_9_a_failed_reservation_cancels_and_refunds(shop)
    await saga.test_scenario_10_a_failed_delivery_cancels_refunds_and_returns(shop)
    await saga.test_placing_is_idempotent_and_orders_are_private(shop)
    await saga.test_the_stream_sends_every_change_until_final(shop)
