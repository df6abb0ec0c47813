"""The gateway on its own: problem+json everywhere, request ids, CORS, OpenAPI, auth, 503s."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import httpx
import pytest

from mercato.platform.signing import SigningKey
from mercato.services.gateway.service import service as gateway
from mercato.services.gateway.upstream import STATUS
from tests.services.gateway.conftest import closed_port
from tests.support import running
from tests.support import test_settings as make_settings

PROBLEM = "application/problem+json"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path,
        grpc_targets=f"identity=127.0.0.1:{closed_port()}",
        cors_origins="https://shop.example",
        auth_rate_limit=3,
    )
    async with running([gateway], settings) as (_system, http):
        yield http


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["title"]
    assert body["requestId"] == response.headers["x-request-id"]
    return body


async def test_an_unknown_route_is_a_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/no/such/thing"), 404)
    assert_problem(await client.delete("/api/v1/auth/login"), 405)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/v1/products", "GET, POST"),
        ("POST", "/api/v1/products/p1", "DELETE, GET, PATCH"),
        ("DELETE", "/api/v1/auth/login", "POST"),
    ],
)
async def test_a_405_names_every_method_the_path_takes(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == allowed


async def test_every_answer_forbids_content_sniffing(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/openapi.json"),
        await client.get("/no/such/thing"),
        await client.get("/api/v1/cart"),
    ):
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_invalid_body_is_a_422_problem_that_does_not_echo_it(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"email": "x", "password": "s3cret-pass", "extra": "x"}
    )
    body = assert_problem(response, 422)
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "email"), ("body", "extra")}
    assert "s3cret" not in response.text
    assert_problem(await client.post("/api/v1/auth/login", content=b"{not json"), 422)


async def test_request_ids_are_kept_or_made(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    made = (await client.get("/openapi.json", headers={"X-Request-ID": "bad id\t!"})).headers
    assert made["x-request-id"] != "bad id\t!" and len(made["x-request-id"]) == 36


async def test_openapi_31_and_docs_are_served(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert "/api/v1/auth/register" in document["paths"]
    assert "ProblemDetails" in document["components"]["schemas"]
    register = document["paths"]["/api/v1/auth/register"]["post"]
    assert PROBLEM in register["responses"]["422"]["content"]
    # A state conflict (FAILED_PRECONDITION) is answered 422, and documented so; 409 is for
    # what exists already or changed meanwhile (ALREADY_EXISTS, ABORTED).
    assert STATUS[grpc.StatusCode.FAILED_PRECONDITION] == 422
    assert "current state" in register["responses"]["422"]["description"]
    assert "current state" not in register["responses"]["409"]["description"]
    docs = await client.get("/docs")
    assert docs.status_code == 200
    # Swagger UI's script and style come from the gateway itself: the page works offline.
    linked = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert linked and all(url.startswith("/docs/assets/") for url in linked), linked
    for url in linked:
        assert (await client.get(url)).status_code == 200


async def test_cors_answers_the_configured_origin_only(client: httpx.AsyncClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST"}
    ok = await client.options(
        "/api/v1/auth/login", headers={"Origin": "https://shop.example", **preflight}
    )
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    other = await client.options(
        "/api/v1/auth/login", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in other.headers


async def test_an_unreachable_service_is_a_quick_503(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": "ada@example.com", "password": "correct horse 1", "name": "Ada"},
    )
    body = assert_problem(response, 503)
    assert "identity" in str(body["detail"])
    assert_problem(await client.get("/.well-known/jwks.json"), 503)


async def test_a_route_needing_a_caller_cannot_be_judged_without_keys(
    client: httpx.AsyncClient,
) -> None:
    token = SigningKey.generate().issue("u", ["customer"], timedelta(minutes=1))
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 503)


async def test_login_is_rate_limited_per_address(client: httpx.AsyncClient) -> None:
    body = {"email": "ada@example.com", "password": "whatever"}
    statuses = [(await client.post("/api/v1/auth/login", json=body)).status_code for _ in range(4)]
    assert statuses == [503, 503, 503, 429]
    limited = await client.post("/api/v1/auth/login", json=body)
    assert_problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    # Registration counts separately.
    assert (await client.post("/api/v1/auth/register", json={})).status_code == 422


@pytest.mark.parametrize("authorization", [None, "Basic YTpi", "Bearer", "Bearer not-a-jwt"])
async def test_no_or_bad_token_is_401(signed: httpx.AsyncClient, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    body = assert_problem(await signed.get("/api/v1/users/me", headers=headers), 401)
    assert set(body) <= {"type", "title", "status", "detail", "instance", "requestId"}


async def test_expired_and_foreign_tokens_are_401(
    signed: httpx.AsyncClient, key: SigningKey
) -> None:
    old = datetime.now(UTC) - timedelta(hours=1)
    expired = key.issue("u", ["admin"], timedelta(minutes=1), now=old)
    foreign = SigningKey.generate().issue("u", ["admin"], timedelta(minutes=1))
    for token in (expired, foreign):
        response = await signed.get(
            "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert_problem(response, 401)
        response = await signed.put(
            "/api/v1/users/u/roles",
            json={"roles": ["admin"]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert_problem(response, 401)


async def test_a_customer_token_on_an_admin_route_is_403(
    signed: httpx.AsyncClient, key: SigningKey
) -> None:
    token = key.issue("u1", ["customer"], timedelta(minutes=1))
    response = await signed.put(
        "/api/v1/users/u2/roles",
        json={"roles": ["admin"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_problem(response, 403)
    response = await signed.get("/api/v1/users/u2", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 403)


async def test_an_admin_token_passes_the_gateway_and_meets_the_503(
    signed: httpx.AsyncClient, key: SigningKey
) -> None:
    token = key.issue("a1", ["admin"], timedelta(minutes=1))
    response = await signed.put(
        "/api/v1/users/u2/roles",
        json={"roles": ["admin"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_problem(response, 503)


async def test_a_service_that_never_answers_is_a_503_at_the_deadline(tmp_path: Path) -> None:
    # A socket that accepts connections and then says nothing, like a hung process.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    settings = make_settings(tmp_path, grpc_targets=f"identity=127.0.0.1:{port}", grpc_deadline=0.3)
    try:
        async with running([gateway], settings) as (_system, http):
            response = await http.post(
                "/api/v1/auth/login", json={"email": "ada@example.com", "password": "x"}
            )
            assert_problem(response, 503)
    finally:
        silent.close()


async def test_an_unexpected_error_is_a_bare_500_problem(tmp_path: Path) -> None:
    async with running([gateway], make_settings(tmp_path)) as (system, _http):
        ctx = system.hosts["gateway"].ctx
        assert ctx is not None
        app = gateway.http(ctx)  # type: ignore[misc]

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals")

        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.get("/boom")
    assert_problem(response, 500)
    assert "secret internals" not in response.text and "Traceback" not in response.text
