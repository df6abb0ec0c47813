"""The web pages as the gateway serves them (no browser: tests/web drives one): every page a
shell with its own module, a strict content security policy, nothing from outside, under
100 kB with everything it loads, and none of it in the OpenAPI document."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.services.gateway.service import service as gateway
from mercato.services.gateway.web import PAGES, STATIC
from tests.support import running
from tests.support import test_settings as make_settings

BUDGET = 100_000  # bytes a page may load, images aside


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running([gateway], make_settings(tmp_path)) as (_system, http):
        yield http


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "some-id", path)


async def loads(client: httpx.AsyncClient, url: str, seen: set[str]) -> int:
    """The bytes of ``url`` and of every script and stylesheet it pulls in, once each."""
    if url in seen:
        return 0
    seen.add(url)
    response = await client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    size = len(response.content)
    text = response.text
    found = re.findall(r'(?:src|href)="(/static/[^"]+)"', text)
    found += [f"/static/{m}" for m in re.findall(r'from "\./([^"]+)"', text)]
    for linked in found:
        size += await loads(client, linked, seen)
    return size


@pytest.mark.parametrize("path", list(PAGES))
async def test_every_page_is_a_small_shell_of_its_own_module(
    client: httpx.AsyncClient, path: str
) -> None:
    area, page, _title = PAGES[path]
    response = await client.get(concrete(path))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert f'data-page="{page}"' in response.text
    assert f'src="/static/{area}.js"' in response.text
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert await loads(client, concrete(path), set()) < BUDGET


async def test_no_page_loads_anything_from_elsewhere() -> None:
    for asset in STATIC.iterdir():
        text = asset.read_text()
        assert not re.search(r"https?://", text), asset.name


async def test_the_pages_are_not_api_operations(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in PAGES if p in paths]
    assert not [p for p in paths if p.startswith("/static") or p.startswith("/console")]


async def test_redoc_and_swagger_ui_are_served_from_the_package(
    client: httpx.AsyncClient,
) -> None:
    for page in ("/docs", "/redoc"):
        html = (await client.get(page)).text
        scripts = re.findall(r'<script src="([^"]+)"', html)
        assert scripts and all(s.startswith("/docs/assets/") for s in scripts), scripts
        for script in scripts:
            assert (await client.get(script)).status_code == 200
        assert "googleapis" not in html


async def test_an_unknown_static_file_is_a_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/static/nothing.js")).status_code == 404
