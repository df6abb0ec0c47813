"""What an anonymous client's bad input gets from the gateway: a 4xx problem, never a 500
(issue 22's probe: deep JSON, huge bodies, bytes that are not UTF-8, huge numbers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.services.gateway.service import service as gateway
from tests.services.gateway.test_gateway_core import assert_problem, closed_port
from tests.support import running
from tests.support import test_settings as make_settings

JSON = {"content-type": "application/json"}
# Every route that reads a JSON body before it knows who asks.
LIMIT = 65_536
WRITES = ["/api/v1/cart/items", "/api/v1/cart/checkout", "/api/v1/auth/login"]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path, grpc_targets=f"identity=127.0.0.1:{closed_port()}", max_body_bytes=LIMIT
    )
    async with running([gateway], settings) as (_system, http):
        yield http


@pytest.mark.parametrize("path", WRITES)
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,  # nested deeper than Python's recursion limit
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"productId": "\xff\xfe", "quantity": 1}',  # not UTF-8
        b'{"productId": "p", "quantity": 1' + b"0" * 3000 + b"}",  # a 3000-digit number
        b'{"productId": "p", "quantity": 1e999999}',
        b'{"productId": "p", "quantity": NaN}',
        b"\x00\x01\x02",
        b"",
    ],
    ids=["list-5000", "object-3000", "latin1", "digits-3000", "exp", "nan", "binary", "empty"],
)
async def test_bad_json_is_a_client_error(
    client: httpx.AsyncClient, path: str, body: bytes
) -> None:
    response = await client.post(path, content=body, headers=JSON)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_body_over_the_limit_is_refused_unread(
    client: httpx.AsyncClient, method: str
) -> None:
    big = b'{"email": "' + b"a" * LIMIT + b'", "password": "x"}'
    response = await client.request(method, "/api/v1/auth/login", content=big, headers=JSON)
    assert_problem(response, 413)


async def test_a_chunked_body_over_the_limit_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(LIMIT // 1000 + 1):
            yield b" " * 1000

    response = await client.post("/api/v1/cart/items", content=chunks(), headers=JSON)
    assert_problem(response, 413)


async def test_a_body_under_the_limit_is_read(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/cart/items", json={"productId": "p", "quantity": 1})
    assert_problem(response, 401)  # read, then refused for want of a token
