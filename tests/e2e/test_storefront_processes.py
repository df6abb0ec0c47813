"""The storefront journey with every service its own ``mercato serve`` process, and with most of
them together in one, on RabbitMQ and PostgreSQL (a database per service), driven only through
the gateway's HTTP port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.platform.settings import Settings
from tests.e2e.processes import serving
from tests.e2e.test_storefront import ADMIN, STOREFRONT, journey, outbox_reader, separate_carts

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.rabbitmq]


# Alone: a process per service. Together: the gateway and the services it calls share a
# process (their gRPC calls stay in it), payment (only events) runs apart.
TOPOLOGIES = {"alone": STOREFRONT, "together": ("identity,catalog,cart,gateway", "payment")}


@pytest.fixture(params=[pytest.param("alone", marks=pytest.mark.long), pytest.param("together")])
async def gateway(
    postgres_template: str, rabbitmq_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serving(
            TOPOLOGIES[request.param],
            broker_url=rabbitmq_url,
            postgres_template=postgres_template,
            data_dir=tmp_path,
            admin=ADMIN,
        ) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
    ):
        yield http


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
        await events.db.dispose()  # type: ignore[attr-defined]
