"""What an anonymous client's bad input gets from the gateway: a 4xx problem, never a 500
(issue 22's probe: deep JSON, huge bodies, bytes that are not UTF-8, huge numbers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercato.platform.signing import SigningKey
from mercato.services.gateway.inputs import Input
from mercato.services.gateway.routes import ROUTERS
from mercato.services.gateway.service import service as gateway
from tests.services.gateway.conftest import closed_port
from tests.services.gateway.test_gateway_core import assert_problem
from tests.support import ADDRESS, PAYMENT, running
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


@pytest.fixture
def admin(key: SigningKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.issue('root', ['admin'], timedelta(minutes=5))}"}


PRODUCT = {"name": "Red mug", "price": 8, "quantity": 5}
CHECKOUT = {"payment": PAYMENT, "shippingAddress": ADDRESS}
# (method, path, a body that validates, the field changed, values that must be refused)
REFUSED: list[tuple[str, str, dict[str, Any], list[str], list[Any]]] = [
    (
        "POST",
        "/api/v1/auth/register",
        {"email": "a@b.example", "password": "pw-12345", "name": "A"},
        ["email"],
        ["a\x00@b.example", "a@b.example\x00"],
    ),
    (
        "POST",
        "/api/v1/auth/register",
        {"email": "a@b.example", "password": "pw-12345", "name": "A"},
        ["name"],
        ["Ada\x00", "Ada\u202e", "\x1b[31mAda"],
    ),
    ("POST", "/api/v1/products", PRODUCT, ["name"], ["Mug\x1b[2J", "Mug\u202egum", "Mug\x00"]),
    (
        "POST",
        "/api/v1/products",
        PRODUCT,
        ["price"],
        ["1_000", "\uff15", " 5 ", "1E+2", "8", True, None],
    ),
    ("POST", "/api/v1/products", PRODUCT, ["quantity"], ["2", True, 2.5, 2.0]),
    ("PATCH", "/api/v1/products/p1", {"price": 9}, ["price"], ["9", False]),
    (
        "POST",
        "/api/v1/cart/items",
        {"productId": "p1", "quantity": 1},
        ["quantity"],
        ["2", True, 2.0],
    ),
    ("POST", "/api/v1/cart/items", {"productId": "p1", "quantity": 1}, ["productId"], ["p\x00"]),
    (
        "POST",
        "/api/v1/cart/checkout",
        CHECKOUT,
        ["shippingAddress", "line1"],
        ["1 Row\x00", "1 Row\u202e"],
    ),
    ("POST", "/api/v1/cart/checkout", CHECKOUT, ["payment", "holder"], ["Ada\x00", "\x1b]0;x"]),
]


def changed(body: dict[str, Any], where: list[str], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(body))
    inner = copy
    for name in where[:-1]:
        inner = inner[name]
    inner[where[-1]] = value
    return dict(copy)


@pytest.mark.parametrize(
    ("method", "path", "body", "where", "value"),
    [(m, p, b, w, v) for m, p, b, w, values in REFUSED for v in values],
)
async def test_control_characters_and_loose_numbers_are_refused(
    signed: httpx.AsyncClient,
    admin: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any],
    where: list[str],
    value: Any,
) -> None:
    response = await signed.request(method, path, json=changed(body, where, value), headers=admin)
    problem = assert_problem(response, 422)
    assert where[-1] in json.dumps(problem["errors"])


@pytest.mark.parametrize(
    ("method", "path", "body"), sorted({(m, p, json.dumps(b)) for m, p, b, *_ in REFUSED})
)
async def test_the_same_bodies_unchanged_are_taken(
    signed: httpx.AsyncClient, admin: dict[str, str], method: str, path: str, body: str
) -> None:
    response = await signed.request(method, path, content=body, headers={**admin, **JSON})
    assert response.status_code == 503, response.text  # valid: on to a service, not there


async def test_a_description_may_hold_lines(
    signed: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    lines = {**PRODUCT, "description": "Holds tea.\n\tDishwasher safe."}
    response = await signed.post("/api/v1/products", json=lines, headers=admin)
    assert response.status_code == 503, response.text


def test_every_request_body_is_an_input() -> None:
    """A new body model gets the rules above only by deriving from ``Input``."""
    loose = [
        f"{route.path} {param.name}: {param.field_info.annotation}"
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for param in route.dependant.body_params
        if not all(
            isinstance(kind, type) and issubclass(kind, Input)
            for kind in get_args(param.field_info.annotation) or [param.field_info.annotation]
            if kind is not type(None)
        )
    ]
    assert loose == []


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**400), max_value=10**400)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(["productId", "quantity", "payment", "x"]), inner)
        ),
        max_leaves=20,
    )


def _deep(depth: int, kind: str) -> bytes:
    """JSON nested ``depth`` deep: lists, or objects."""
    opener, closer = (b"[", b"]") if kind == "list" else (b'{"a":', b"}")
    return opener * depth + b"1" + closer * depth


BODIES = st.one_of(
    _json_values().map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),  # mostly not UTF-8, not JSON
    st.builds(_deep, st.integers(900, 5000), st.sampled_from(["list", "object"])),
    st.builds(
        lambda n: b'{"productId": "p", "quantity": 1' + b"0" * n + b"}", st.integers(1, 5000)
    ),
    st.builds(lambda raw: b'{"productId": "' + raw + b'", "quantity": 1}', st.binary(max_size=20)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES, path=st.sampled_from([*WRITES, "/api/v1/products", "/api/v1/orders"]))
async def test_the_json_readers_never_fail_on_what_they_are_sent(
    signed: httpx.AsyncClient, admin: dict[str, str], body: bytes, path: str
) -> None:
    response = await signed.post(path, content=body, headers={**admin, **JSON})
    # 503: valid enough to go on to a service, which is not there.
    assert response.status_code < 500 or response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
