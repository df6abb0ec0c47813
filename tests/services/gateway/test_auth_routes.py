"""The auth and users routes through the gateway, with identity behind it (embedded)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from mercato.services.gateway.service import service as gateway
from mercato.services.identity.service import service as identity
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = {"email": "root@shop.example", "password": "admin-pass-42"}
ADA = {"email": "ada@example.com", "password": "correct horse 9", "name": "Ada"}
PROBLEM = "application/problem+json"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path,
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
        login_max_failures=3,
        login_delay=60,
        auth_rate_limit=8,
    )
    async with running([identity, gateway], settings) as (_system, http):
        yield http


async def sign_in(api: httpx.AsyncClient, who: dict[str, str]) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/auth/login", json={"email": who["email"], "password": who["password"]}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"  # RFC 6749 §5.1
    return dict(response.json())


@asynccontextmanager
async def from_address(api: httpx.AsyncClient, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app, connecting from ``address``."""
    app = api._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=app, client=(address, 4242))
    async with httpx.AsyncClient(transport=transport, base_url=str(api.base_url)) as client:
        yield client


def auth(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    return dict(response.json())


async def test_register_login_and_read_my_profile(api: httpx.AsyncClient) -> None:
    created = await api.post("/api/v1/auth/register", json=ADA)
    assert created.status_code == 201
    user_id = created.json()["userId"]
    tokens = await sign_in(api, ADA)
    assert set(tokens) == {"accessToken", "refreshToken", "tokenType", "expiresIn"}
    me = (await api.get("/api/v1/users/me", headers=auth(tokens))).json()
    assert me["userId"] == user_id and me["roles"] == ["customer"]
    assert "password" not in json.dumps(me).lower()
    changed = await api.patch("/api/v1/users/me", json={"name": "Ada L."}, headers=auth(tokens))
    assert changed.json()["name"] == "Ada L."


async def test_registration_errors_are_problems(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/auth/register", json=ADA)
    assert problem(await api.post("/api/v1/auth/register", json=ADA), 409)["detail"]
    weak = {**ADA, "email": "bo@example.com", "password": "weakweak"}
    problem(await api.post("/api/v1/auth/register", json=weak), 422)


async def test_registration_honours_the_idempotency_key(api: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "signup-42"}
    first = await api.post("/api/v1/auth/register", json=ADA, headers=headers)
    again = await api.post("/api/v1/auth/register", json=ADA, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    other = {**ADA, "email": "bob@example.com"}
    problem(await api.post("/api/v1/auth/register", json=other, headers=headers), 422)


async def test_refresh_rotates_and_a_replayed_refresh_token_is_refused(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/api/v1/auth/register", json=ADA)
    tokens = await sign_in(api, ADA)
    body = {"refreshToken": tokens["refreshToken"]}
    fresh = await api.post("/api/v1/auth/refresh", json=body)
    assert fresh.status_code == 200
    problem(await api.post("/api/v1/auth/refresh", json=body), 401)
    problem(
        await api.post("/api/v1/auth/refresh", json={"refreshToken": fresh.json()["refreshToken"]}),
        401,
    )


async def test_refreshed_tokens_are_not_cached(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/auth/register", json=ADA)
    body = {"refreshToken": (await sign_in(api, ADA))["refreshToken"]}
    refreshed = await api.post("/api/v1/auth/refresh", json=body)
    assert refreshed.status_code == 200
    assert refreshed.headers["cache-control"] == "no-store"
    assert refreshed.headers["pragma"] == "no-cache"


async def test_logout_ends_the_refresh_family(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/auth/register", json=ADA)
    tokens = await sign_in(api, ADA)
    body = {"refreshToken": tokens["refreshToken"]}
    assert (await api.post("/api/v1/auth/logout", json=body)).status_code == 204
    problem(await api.post("/api/v1/auth/refresh", json=body), 401)


async def test_failed_logins_throttle_the_guesser_not_the_owner(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/auth/register", json=ADA)
    wrong = {"email": ADA["email"], "password": "not it 123"}
    for _ in range(3):
        body = problem(await api.post("/api/v1/auth/login", json=wrong), 401)
        assert body["detail"] == "wrong email or password"
    right = {"email": ADA["email"], "password": ADA["password"]}
    throttled = await api.post("/api/v1/auth/login", json=right)
    problem(throttled, 429)
    assert int(throttled.headers["retry-after"]) > 0
    # The owner, from another address, signs in.
    async with from_address(api, "198.51.100.7") as owner:
        assert (await owner.post("/api/v1/auth/login", json=right)).status_code == 200


async def test_one_email_is_tried_a_limited_number_of_times_from_anywhere(
    api: httpx.AsyncClient,
) -> None:
    """A 409 says an email is registered: asking about one email is rate-limited whichever
    address asks (besides the limit per address)."""
    await api.post("/api/v1/auth/register", json=ADA)
    answers = []
    for n in range(9):
        async with from_address(api, f"203.0.113.{n}") as other:
            answers.append((await other.post("/api/v1/auth/register", json=ADA)).status_code)
    assert answers == [409] * 7 + [429] * 2
    tokens = await sign_in(api, ADA)
    change = {"email": ADA["email"].upper()}
    problem(await api.patch("/api/v1/users/me", json=change, headers=auth(tokens)), 429)


async def test_the_jwks_is_served_and_verifies_tokens(api: httpx.AsyncClient) -> None:
    response = await api.get("/.well-known/jwks.json")
    keys = response.json()["keys"]
    assert keys and all("d" not in k for k in keys)  # public halves only
    header = (await sign_in(api, ADMIN))["accessToken"].split(".")[0]
    kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]
    assert kid in {k["kid"] for k in keys}


def forge(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.{signature}"


async def test_forged_tokens_are_refused_and_leak_nothing(api: httpx.AsyncClient) -> None:
    now = int(datetime.now(UTC).timestamp())
    admin = await sign_in(api, ADMIN)
    header = json.loads(base64.urlsafe_b64decode(admin["accessToken"].split(".")[0] + "=="))
    claims = {"iss": "mercato/identity", "aud": "mercato", "sub": "x", "roles": ["admin"],
              "iat": now, "exp": now + 60}  # fmt: skip
    signature = admin["accessToken"].split(".")[2]
    forged = [
        forge({"alg": "none", "kid": header["kid"]}, claims),
        forge({"alg": "none", "typ": "JWT"}, claims),
        forge(header, claims, signature),  # identity's signature over other claims
        forge({**header, "alg": "HS256"}, claims, signature),
    ]
    for token in forged:
        for method, path in (
            ("GET", "/api/v1/users/me"),
            ("GET", f"/api/v1/users/{claims['sub']}"),
        ):
            response = await api.request(method, path, headers={"Authorization": f"Bearer {token}"})
            body = problem(response, 401)
            assert "email" not in response.text and set(body) <= {
                "type", "title", "status", "detail", "instance", "requestId"
            }  # fmt: skip


async def test_roles_are_set_by_an_admin_only(api: httpx.AsyncClient) -> None:
    user_id = (await api.post("/api/v1/auth/register", json=ADA)).json()["userId"]
    customer = await sign_in(api, ADA)
    url = f"/api/v1/users/{user_id}/roles"
    body = problem(await api.put(url, json={"roles": ["admin"]}, headers=auth(customer)), 403)
    assert ADA["email"] not in json.dumps(body)  # not "ada": a random id may contain it
    problem(await api.put(url, json={"roles": ["admin"]}), 401)
    admin = await sign_in(api, ADMIN)
    problem(await api.put(url, json={"roles": ["root"]}, headers=auth(admin)), 422)
    problem(
        await api.put("/api/v1/users/nobody/roles", json={"roles": ["admin"]}, headers=auth(admin)),
        404,
    )
    updated = await api.put(url, json={"roles": ["admin", "customer"]}, headers=auth(admin))
    assert updated.json()["roles"] == ["admin", "customer"]
    # A fresh sign-in carries the new role; the gateway lets it through admin routes.
    promoted = await sign_in(api, ADA)
    assert (await api.get(f"/api/v1/users/{user_id}", headers=auth(promoted))).status_code == 200


async def test_a_customer_cannot_read_another_user(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/auth/register", json=ADA)
    bob = {**ADA, "email": "bob@example.com", "name": "Bob"}
    bob_id = (await api.post("/api/v1/auth/register", json=bob)).json()["userId"]
    ada = await sign_in(api, ADA)
    response = await api.get(f"/api/v1/users/{bob_id}", headers=auth(ada))
    problem(response, 403)
    assert "bob@example.com" not in response.text
