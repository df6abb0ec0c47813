"""Running services in tests: embedded (one process, in-process bus) and driven over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from mercato.platform.runtime.service import Service
from mercato.platform.runtime.system import System, create_app
from mercato.platform.settings import Settings

# What a shopper sends, in tests that go through the API.
ADMIN = {"email": "root@shop.example", "password": "admin-pass-42"}
PAYMENT = {
    "method": "card",
    "cardNumber": "4242424242424242",
    "expiry": "12/39",
    "cvc": "123",
    "holder": "Ada",
}
ADDRESS = {"name": "Ada", "line1": "1 Row", "city": "London", "postalCode": "N1", "country": "GB"}


def test_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test system: fast retries and polling, no demo data unless asked."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "broker_url": "memory://",
        "retry_base_delay": 0.05,
        "relay_poll_interval": 0.05,
        "demo_catalog": False,
        "carrier_delay": "never",
        "log_level": "warning",
        **overrides,
    }
    return Settings(**values)


@asynccontextmanager
async def running(
    services: Sequence[Service], settings: Settings
) -> AsyncIterator[tuple[System, httpx.AsyncClient]]:
    """Start ``services`` as one system; yield it and an HTTP client on its app (no sockets)."""
    system = System(services, settings)
    app = create_app(system)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mercato.test") as client:
            yield system, client
