"""Running services in tests: embedded (one process, in-process bus) and driven over HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

from mercato.platform.runtime.service import Service
from mercato.platform.runtime.system import System, create_app
from mercato.platform.settings import Settings

T = TypeVar("T")

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


class ServedSystem:
    """``services`` as one system behind uvicorn on a free port, in a thread of its own: for
    clients that need a real socket (a browser, schemathesis)."""

    def __init__(self, services: Sequence[Service], settings: Settings):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.system = System(services, settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        config = uvicorn.Config(
            create_app(self.system),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._serve()))
        self.base_url = f"http://127.0.0.1:{self.port}"

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    def call(self, work: Callable[[System], Awaitable[T]], timeout: float = 30) -> T:
        """Run ``work(system)`` on the server's event loop (from the test's thread)."""
        assert self.loop is not None, "not started"
        return asyncio.run_coroutine_threadsafe(work(self.system), self.loop).result(timeout)

    def start(self) -> None:
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                break
            time.sleep(0.05)
        assert self.server.started, "the system did not start"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
