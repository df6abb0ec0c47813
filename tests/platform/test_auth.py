"""Token verification: only identity's keys, only asymmetric algorithms, only fresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mercato.platform.auth import (
    ExpiredToken,
    InvalidToken,
    JwksCache,
    KeysUnavailable,
    MissingToken,
    TokenVerifier,
    bearer_token,
)
from mercato.platform.signing import SigningKey, jwks_of, static_jwks

MINUTE = timedelta(minutes=1)


def verifier(*keys: SigningKey) -> TokenVerifier:
    return TokenVerifier(JwksCache(static_jwks(*keys)))


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_token_signed_by_identity_names_the_caller_and_roles() -> None:
    key = SigningKey.generate()
    caller = await verifier(key).verify(key.issue("user-1", ["customer"], MINUTE))
    assert caller.user_id == "user-1"
    assert caller.roles == {"customer"}
    assert not caller.is_admin
    assert caller.may_act_for("user-1") and not caller.may_act_for("user-2")


async def test_rs256_keys_work_as_well() -> None:
    key = SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    caller = await verifier(key).verify(key.issue("admin-1", ["admin"], MINUTE))
    assert caller.is_admin and caller.may_act_for("anyone")


async def test_an_expired_token_is_refused() -> None:
    key = SigningKey.generate()
    old = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(ExpiredToken):
        await verifier(key).verify(key.issue("user-1", ["customer"], MINUTE, now=old))


async def test_a_token_signed_with_another_key_is_refused() -> None:
    identity, stranger = SigningKey.generate(), SigningKey.generate()
    with pytest.raises(InvalidToken, match="unknown key"):
        await verifier(identity).verify(stranger.issue("user-1", ["admin"], MINUTE))


async def test_a_forged_token_reusing_identitys_kid_is_refused() -> None:
    identity, stranger = SigningKey.generate(), SigningKey.generate()
    forged = jwt.encode(
        {"iss": "mercato/identity", "aud": "mercato", "sub": "u", "roles": ["admin"],
         "iat": datetime.now(UTC), "exp": datetime.now(UTC) + MINUTE},
        stranger.private_key, algorithm="EdDSA", headers={"kid": identity.kid},
    )  # fmt: skip
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        await verifier(identity).verify(forged)


async def test_alg_none_is_refused() -> None:
    key = SigningKey.generate()
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "mercato/identity", "aud": "mercato", "sub": "u", "roles": ["admin"],
              "iat": now, "exp": now + 60}  # fmt: skip
    token = f"{b64({'alg': 'none', 'kid': key.kid})}.{b64(claims)}."
    with pytest.raises(InvalidToken, match="'none' is not accepted"):
        await verifier(key).verify(token)


async def test_an_hmac_token_keyed_with_the_public_key_is_refused() -> None:
    key = SigningKey.generate()
    # The classic confusion attack: sign with HMAC, using the published public key as secret.
    secret = key.public_jwk()["x"].encode()
    signing_input = f"{b64({'alg': 'HS256', 'kid': key.kid})}.{b64({'sub': 'u'})}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidToken, match="HS256"):
        await verifier(key).verify(token)


@pytest.mark.parametrize(
    "claims", [{"iss": "someone-else"}, {"aud": "another-app"}, {"sub": ""}, {"iat": "soon"}]
)
async def test_wrong_issuer_audience_or_subject_is_refused(claims: dict[str, Any]) -> None:
    key = SigningKey.generate()
    with pytest.raises(InvalidToken):
        await verifier(key).verify(key.issue("u", ["customer"], MINUTE, **claims))


async def test_roles_that_are_not_a_list_are_refused() -> None:
    key = SigningKey.generate()
    with pytest.raises(InvalidToken, match="roles"):
        await verifier(key).verify(key.issue("u", "admin", MINUTE))  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "Bearer x"])
async def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        await verifier(SigningKey.generate()).verify(token)


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    for value in (None, "", "Basic abc", "Bearer", "Bearer   "):
        with pytest.raises(MissingToken):
            bearer_token(value)


async def test_a_new_key_is_fetched_when_an_unknown_kid_shows_up() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    documents = [jwks_of(old), jwks_of(old, new)]
    fetches = 0

    async def fetch() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        return documents[min(fetches - 1, 1)]

    v = TokenVerifier(JwksCache(fetch, min_refresh=0))
    await v.verify(old.issue("u", [], MINUTE))
    assert (await v.verify(new.issue("u", [], MINUTE))).user_id == "u"
    assert fetches == 2


async def test_unknown_kids_do_not_refetch_more_than_once_per_interval() -> None:
    key, stranger = SigningKey.generate(), SigningKey.generate()
    fetches = 0

    async def fetch() -> dict[str, Any]:
        nonlocal fetches
        fetches += 1
        return jwks_of(key)

    v = TokenVerifier(JwksCache(fetch, min_refresh=60))
    for _ in range(5):
        with pytest.raises(InvalidToken):
            await v.verify(stranger.issue("u", [], MINUTE))
    assert fetches == 1


async def test_keys_that_cannot_be_fetched_are_unavailable_not_invalid() -> None:
    async def fetch() -> dict[str, Any]:
        raise ConnectionError("identity is down")

    key = SigningKey.generate()
    with pytest.raises(KeysUnavailable):
        await TokenVerifier(JwksCache(fetch)).verify(key.issue("u", [], MINUTE))


async def test_cached_keys_survive_a_failed_refresh() -> None:
    key = SigningKey.generate()
    up = True

    async def fetch() -> dict[str, Any]:
        if not up:
            raise ConnectionError("identity is down")
        return jwks_of(key)

    v = TokenVerifier(JwksCache(fetch, ttl=0))
    await v.verify(key.issue("u", [], MINUTE))
    up = False
    assert (await v.verify(key.issue("u", [], MINUTE))).user_id == "u"
