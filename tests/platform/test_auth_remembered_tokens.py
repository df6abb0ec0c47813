"""A verifier remembers the tokens it accepted: never past their exp, never after their key
left the JWKS, and never a token it refused."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from mercato.platform import auth
from mercato.platform.auth import ExpiredToken, InvalidToken, JwksCache, TokenVerifier
from mercato.platform.signing import SigningKey, jwks_of, static_jwks

MINUTE = timedelta(minutes=1)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature and claims were actually checked, in order."""
    seen: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(auth.jwt, "decode", counting)
    return seen


class Clock:
    """``time`` as the auth module sees it, with the wall clock moved by ``ahead`` seconds."""

    def __init__(self) -> None:
        self.ahead = 0.0
        self.monotonic = time.monotonic

    def time(self) -> float:
        return time.time() + self.ahead


async def test_a_token_presented_again_is_not_checked_again(decodes: list[str]) -> None:
    key = SigningKey.generate()
    v = TokenVerifier(JwksCache(static_jwks(key)))
    token = key.issue("user-1", ["customer"], MINUTE)
    first = await v.verify(token)
    again = await v.verify(token)
    assert again == first and again.user_id == "user-1" and again.roles == {"customer"}
    assert decodes == [token]


async def test_a_remembered_token_is_checked_again_once_its_exp_has_passed(
    decodes: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SigningKey.generate()
    v = TokenVerifier(JwksCache(static_jwks(key)))
    token = key.issue("user-1", ["customer"], MINUTE)
    await v.verify(token)
    clock = Clock()
    monkeypatch.setattr(auth, "time", clock)
    clock.ahead = 59  # still before exp
    await v.verify(token)
    assert decodes == [token]
    clock.ahead = 61  # past exp: the signature and claims are checked again
    await v.verify(token)  # (PyJWT's own clock did not move: still valid there)
    assert decodes == [token, token]


async def test_a_token_within_the_leeway_after_exp_is_accepted_but_not_remembered(
    decodes: list[str],
) -> None:
    key = SigningKey.generate()
    v = TokenVerifier(JwksCache(static_jwks(key)))
    past = datetime.now(UTC) - MINUTE - timedelta(seconds=auth.LEEWAY_SECONDS / 2)
    token = key.issue("user-1", [], MINUTE, now=past)
    await v.verify(token)
    await v.verify(token)
    assert decodes == [token, token]


async def test_an_expired_token_stays_refused() -> None:
    key = SigningKey.generate()
    v = TokenVerifier(JwksCache(static_jwks(key)))
    token = key.issue("user-1", [], MINUTE, now=datetime.now(UTC) - timedelta(hours=1))
    for _ in range(3):
        with pytest.raises(ExpiredToken):
            await v.verify(token)


async def test_a_refused_token_stays_refused_while_a_genuine_one_is_remembered() -> None:
    identity, stranger = SigningKey.generate(), SigningKey.generate()
    v = TokenVerifier(JwksCache(static_jwks(identity)))
    genuine = identity.issue("user-1", ["customer"], MINUTE)
    await v.verify(genuine)
    forged = jwt.encode(
        {"iss": auth.ISSUER, "aud": auth.AUDIENCE, "sub": "user-1", "roles": ["admin"],
         "iat": datetime.now(UTC), "exp": datetime.now(UTC) + MINUTE},
        stranger.private_key, algorithm="EdDSA", headers={"kid": identity.kid},
    )  # fmt: skip
    for _ in range(3):
        with pytest.raises(InvalidToken, match="Signature verification failed"):
            await v.verify(forged)
    assert (await v.verify(genuine)).roles == {"customer"}


async def test_a_key_withdrawn_from_the_jwks_takes_its_remembered_tokens_with_it() -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    document = jwks_of(old)

    async def fetch() -> dict[str, Any]:
        return document

    v = TokenVerifier(JwksCache(fetch, ttl=0))  # ttl 0: the JWKS is fetched on every use
    token = old.issue("user-1", [], MINUTE)
    await v.verify(token)
    await v.verify(token)
    document = jwks_of(new)
    with pytest.raises(InvalidToken, match="unknown key"):
        await v.verify(token)


async def test_a_key_replaced_under_the_same_kid_is_not_trusted_for_remembered_tokens(
    decodes: list[str],
) -> None:
    key, impostor = SigningKey.generate(), SigningKey.generate()
    document = jwks_of(key)

    async def fetch() -> dict[str, Any]:
        return document

    v = TokenVerifier(JwksCache(fetch, ttl=0))
    token = key.issue("user-1", [], MINUTE)
    await v.verify(token)
    await v.verify(token)  # the same document: the same key, remembered
    assert decodes == [token]
    document = {"keys": [{**impostor.public_jwk(), "kid": key.kid}]}
    with pytest.raises(InvalidToken, match="Signature verification failed"):
        await v.verify(token)


async def test_a_verifier_remembers_a_bounded_number_of_tokens(decodes: list[str]) -> None:
    key = SigningKey.generate()
    v = TokenVerifier(JwksCache(static_jwks(key)), remember=3)
    tokens = [key.issue(f"user-{i}", [], MINUTE) for i in range(5)]
    for token in tokens:
        await v.verify(token)
    decodes.clear()
    for token in tokens[2:]:  # the three most recent are remembered
        await v.verify(token)
    assert decodes == []
    await v.verify(tokens[0])  # the oldest was forgotten
    assert decodes == [tokens[0]]
