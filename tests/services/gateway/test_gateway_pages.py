"""The gateway sends kept pages of products without asking the catalog only while the
version the catalog pushes is theirs, never across its own writes, never on a silent watch."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.runtime.system import System
from mercato.services import load_service
from mercato.services.catalog.grpc_api import CatalogApi
from mercato.services.gateway import pages as pages_module
from mercato.services.gateway.pages import Pages, pages_of
from tests.conftest import eventually
from tests.runtime.test_processes import free_port
from tests.services.catalog.test_catalog import ADMIN, bearer, settings_for
from tests.services.catalog.test_catalog_pages import report_stock
from tests.support import running

LAMPS = {"q": "lamp", "pageSize": "10"}


def test_a_kept_page_goes_unasked_only_at_the_pushed_version() -> None:
    pages = Pages()
    assert not pages.sendable(7)  # no watch
    pages.pushed(7)
    assert pages.sendable(7) and not pages.sendable(6)
    pages.pushed(8)
    assert not pages.sendable(7)
    pages.lost()
    assert not pages.sendable(8)


class _SilentCatalog:
    """A channel whose WatchVersion says 7 once and then nothing, never ending."""

    cancelled = 0

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return lambda request, **options: self

    async def read(self) -> Any:
        if not self.cancelled:
            self.cancelled = -1
            return pb.CatalogVersion(version=7)
        await asyncio.Event().wait()

    def cancel(self) -> bool:
        self.cancelled = 1
        return True


async def test_a_silent_watch_counts_as_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages_module, "SILENCE", 0.2)
    channel = _SilentCatalog()
    ctx = SimpleNamespace(
        settings=SimpleNamespace(catalog_watch_interval=0.1),
        extras={},
        own_channel=lambda service: channel,
    )
    task = asyncio.create_task(pages_module.watch_catalog(cast(Any, ctx)))
    try:
        pages = pages_of(cast(Any, ctx))
        await eventually(lambda: pages.sendable(7), timeout=1)
        await eventually(lambda: not pages.sendable(7), timeout=1)  # silent: given up on
        assert channel.cancelled == 1
    finally:
        task.cancel()


def test_after_a_write_only_a_read_begun_after_it_lets_pages_go_unasked() -> None:
    pages = Pages()
    pages.pushed(7)
    before = pages.writes  # a read begun before the write…
    pages.written()
    assert not pages.sendable(7)
    pages.read(7, before)  # …answered after it proves nothing
    assert not pages.sendable(7)
    after = pages.writes
    pages.read(8, after)  # the write is in version 8
    assert not pages.sendable(7)  # a push read before the write
    pages.pushed(7)
    assert not pages.sendable(7)
    pages.pushed(8)
    assert pages.sendable(8)
    pages.read(9, after)  # a later read does not lower the bar below 8, nor raise it
    assert pages.fence == 8


@asynccontextmanager
async def apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, ServiceContext, ServiceContext, list[str]]]:
    """identity and catalog as one system, the gateway as another that reaches them over
    gRPC (as in separate processes); the catalog's ListProducts calls are recorded."""
    asked: list[str] = []
    original = CatalogApi.ListProducts

    async def recorded(self: CatalogApi, request: Any, context: Any) -> Any:
        asked.append(request.query)
        return await original(self, request, context)

    monkeypatch.setattr(CatalogApi, "ListProducts", recorded)
    settings = settings_for(tmp_path, **overrides)
    behind = System([load_service("identity"), load_service("catalog")], settings)
    async with behind.running():
        targets = ",".join(f"{name}={at}" for name, at in behind.grpc_targets.items())
        front = settings.model_copy(update={"grpc_targets": targets})
        async with running([load_service("gateway")], front) as (system, http):
            gateway, catalog = system.hosts["gateway"].ctx, behind.hosts["catalog"].ctx
            assert gateway is not None and catalog is not None
            yield http, gateway, catalog, asked


async def test_pages_follow_the_pushed_version_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with apart(tmp_path, monkeypatch) as (http, gateway, catalog, asked):
        admin = await bearer(http, ADMIN)
        pages = pages_of(gateway)

        async def lamps() -> dict[str, Any]:
            response = await http.get("/api/v1/products", params=LAMPS)
            assert response.status_code == 200, response.text
            return dict(response.json())

        body = {"name": "Desk lamp", "price": 10, "quantity": 5}
        made = await http.post("/api/v1/products", json=body, headers=admin)
        product_id = made.json()["productId"]
        # Read your writes: the page right after the write shows it, whatever was pushed.
        assert [p["name"] for p in (await lamps())["items"]] == ["Desk lamp"]
        asked.clear()

        async def unasked() -> bool:
            before = len(asked)
            await lamps()
            return len(asked) == before

        await eventually(unasked)  # once the watch has pushed the page's version
        for _ in range(5):
            assert await unasked()

        # A change made elsewhere (a stock report): seen once pushed.
        await report_stock(catalog, product_id, 2)

        async def shown() -> bool:
            return bool((await lamps())["items"][0]["available"] == 2)

        await eventually(shown, timeout=2)

        # Writes through this gateway are seen at once, every time.
        for price in (11, 12, 13, 14, 15):
            changed = await http.patch(
                f"/api/v1/products/{product_id}", json={"price": price}, headers=admin
            )
            assert changed.status_code == 200, changed.text
            assert (await lamps())["items"][0]["price"] == price
        assert pages.latest is not None


async def test_no_watch_when_the_interval_is_0(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with apart(tmp_path, monkeypatch, catalog_watch_interval=0) as (http, gw, _, asked):
        for _ in range(3):
            assert (await http.get("/api/v1/products", params=LAMPS)).status_code == 200
        assert len(asked) == 3 and pages_of(gw).latest is None


async def test_the_watch_before_the_catalog_is_up_does_not_fail_the_first_calls(
    tmp_path: Path,
) -> None:
    """The gateway starts first and its watch fails to connect for a while; the catalog's
    first request once it is up is answered (the watch's connections are its own, so the
    shared channel's are not in back-off)."""
    ports = {"identity": free_port(), "catalog": free_port()}
    targets = ",".join(f"{name}=127.0.0.1:{port}" for name, port in ports.items())
    settings = settings_for(tmp_path, grpc_targets=targets)
    async with running([load_service("gateway")], settings) as (_system, http):
        await asyncio.sleep(1.5)  # the watch tries, and fails, to connect
        behind = System(
            [load_service("identity"), load_service("catalog")], settings, grpc_ports=ports
        )
        async with behind.running():
            admin = await bearer(http, ADMIN)
            body = {"name": "Desk lamp", "price": 10}
            made = await http.post("/api/v1/products", json=body, headers=admin)
            assert made.status_code == 201, made.text
