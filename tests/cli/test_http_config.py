"""The HTTP listener `mercato up`/`serve` start: whose address the gateway sees, and what
headers the server adds by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from mercato.cli.run import http_config
from mercato.platform.settings import ConfigError, load_settings
from tests.cli.test_startup_errors import closed_port
from tests.support import test_settings as make_settings


async def echo_client(scope: Scope, receive: Receive, send: Send) -> None:
    """An app that answers the client's address as the gateway would see it."""
    if scope["type"] != "http":
        return
    host = (scope.get("client") or ("?", 0))[0].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": host})


async def seen_from(trusted: str, tmp_path: Path) -> httpx.Response:
    settings = make_settings(tmp_path, port=closed_port(), trusted_proxies=trusted)
    server = uvicorn.Server(http_config(echo_client, settings))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not serving.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient() as http:
            return await http.get(
                f"http://127.0.0.1:{settings.port}/",
                headers={"X-Forwarded-For": "203.0.113.9"},
            )
    finally:
        server.should_exit = True
        await serving


async def test_a_forwarded_address_is_not_believed_by_default(tmp_path: Path) -> None:
    response = await seen_from("", tmp_path)
    assert response.text == "127.0.0.1"
    assert "server" not in response.headers


async def test_a_trusted_proxy_forwards_the_client_address(tmp_path: Path) -> None:
    response = await seen_from("127.0.0.1", tmp_path)
    assert response.text == "203.0.113.9"


def test_a_trusted_proxy_must_be_an_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_TRUSTED_PROXIES", "10.0.0.0/8,proxy.example")
    with pytest.raises(ConfigError, match=r"MERCATO_TRUSTED_PROXIES: .*'proxy\.example'"):
        load_settings()
