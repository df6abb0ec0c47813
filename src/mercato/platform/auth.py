"""Verifying identity's access tokens anywhere: JWTs checked locally against a cached JWKS.

Identity signs short-lived access tokens (EdDSA/Ed25519, or RS256 with an RSA key) and serves
its public keys as a JWKS (gRPC ``GetJwks``). Every service verifies a token itself:

- only the asymmetric algorithms in ``ALGORITHMS`` are accepted — never ``none``, never an
  HMAC (a public key must not double as a shared secret), and the token's ``alg`` must be the
  one its key (found by ``kid``) was published for;
- issuer, audience, ``exp`` and ``iat`` are checked, ``sub`` (the user id) is required.

A verifier remembers the tokens it has accepted (``TokenVerifier`` below: at most
``MAX_REMEMBERED`` of them, never past their ``exp``, and only while their ``kid`` still names
the key that verified them), so a token presented again costs a dictionary look-up instead of
a signature check. That changes nothing a token can do: an access token is a stateless JWT
with a short lifetime (``MERCATO_ACCESS_TOKEN_TTL``, 5 minutes) and nothing revokes one before
its ``exp`` — signing out revokes the refresh token — so a remembered acceptance is exactly what
verifying the same token again would answer. Refusals are not remembered: a refused token is
verified afresh each time and refused again.

In a grpc.aio servicer::

    from mercato.platform.auth import require_caller

    async def GetCart(self, request, context):
        caller = await require_caller(self.ctx, context)              # any signed-in user
        admin = await require_caller(self.ctx, context, role="admin")  # admins only
        if not caller.may_act_for(request.user_id):                   # own data, or admin
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not your cart")

``require_caller`` reads the ``authorization`` metadata (``Bearer <token>``) that the gateway
forwards and aborts with UNAUTHENTICATED (no or bad token), PERMISSION_DENIED (missing role)
or UNAVAILABLE (the keys cannot be fetched). The verifier is made once per service and kept in
``ctx.extras`` (see ``verifier_for``); identity installs one over its own keys.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import jwt
import structlog

if TYPE_CHECKING:
    import grpc.aio

    from mercato.platform.runtime.service import ServiceContext

log = structlog.get_logger(__name__)

ISSUER = "mercato/identity"
AUDIENCE = "mercato"
ALGORITHMS = ("EdDSA", "RS256")
ROLES = ("customer", "admin")
LEEWAY_SECONDS = 10  # clock skew tolerated between machines
JWKS_DEADLINE = 2.0  # seconds allowed for one GetJwks call
MAX_REMEMBERED = 10_000  # accepted tokens a verifier remembers; the oldest are forgotten first
# The metadata in which the gateway tells identity the client's address (failed logins are
# throttled per address and account).
CLIENT_ADDRESS = "x-client-address"


class AuthError(Exception):
    """A request that cannot be authenticated (no token, or one that does not verify)."""


class MissingToken(AuthError):
    pass


class InvalidToken(AuthError):
    pass


class ExpiredToken(InvalidToken):
    pass


class Forbidden(Exception):
    """An authenticated caller without the role or ownership the action needs."""


class KeysUnavailable(Exception):
    """The signing keys cannot be fetched: the caller cannot be judged right now (retry)."""


@dataclass(frozen=True)
class Caller:
    """Who is calling, as the verified token says."""

    user_id: str
    roles: frozenset[str]
    token: str

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def may_act_for(self, user_id: str) -> bool:
        """A customer acts only for themself; an admin for anyone."""
        return self.is_admin or user_id == self.user_id


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` value; ``MissingToken`` otherwise."""
    if not authorization:
        raise MissingToken("no bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise MissingToken("the authorization is not a bearer token")
    return token.strip()


JwksFetch = Callable[[], Awaitable[dict[str, Any]]]


class JwksCache:
    """The JWKS, fetched on first use, refreshed after ``ttl`` or when an unknown ``kid`` shows
    up (at most once per ``min_refresh`` seconds, so junk tokens cannot hammer identity).

    A failed refresh keeps serving the keys it has: identity being briefly down must not log
    everyone out.
    """

    def __init__(self, fetch: JwksFetch, ttl: float = 300.0, min_refresh: float = 5.0):
        self._fetch = fetch
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._document: dict[str, Any] | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        if self._wants_refresh(kid):
            async with self._lock:
                if self._wants_refresh(kid):  # not if another task refreshed meanwhile
                    await self._refresh()
        assert self._keys is not None
        return self._keys.get(kid)

    def _wants_refresh(self, kid: str) -> bool:
        age = time.monotonic() - self._fetched_at
        if self._keys is None or age > self._ttl:
            return True
        return kid not in self._keys and age > self._min_refresh

    async def _refresh(self) -> None:
        try:
            document = await self._fetch()
            # The same document keeps the same key objects: a verifier's remembered tokens
            # stay valid across a refresh that changed nothing (see ``TokenVerifier``).
            if document != self._document or self._keys is None:
                self._keys = parse_jwks(document)
                self._document = document
            self._fetched_at = time.monotonic()
        except Exception as exc:
            if self._keys is None:
                raise KeysUnavailable(f"cannot fetch the signing keys: {exc}") from exc
            log.warning("jwks refresh failed; keeping the cached keys", error=str(exc))
            # Try again after min_refresh, not after a whole ttl.
            self._fetched_at = time.monotonic() - self._ttl + self._min_refresh


def parse_jwks(document: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """The usable keys of a JWKS by ``kid`` (keys without a kid or an allowed alg are ignored)."""
    keys: dict[str, jwt.PyJWK] = {}
    for data in document.get("keys", []):
        kid, alg = data.get("kid"), data.get("alg")
        if not isinstance(kid, str) or alg not in ALGORITHMS:
            continue
        try:
            keys[kid] = jwt.PyJWK(data, algorithm=alg)
        except jwt.PyJWKError as exc:
            log.warning("ignoring an unusable JWK", kid=kid, error=str(exc))
    return keys


@dataclass(frozen=True)
class _Accepted:
    caller: Caller
    kid: str
    key: jwt.PyJWK  # the key object that verified the token
    expires: float  # the token's ``exp``, seconds since the epoch


class TokenVerifier:
    def __init__(
        self,
        keys: JwksCache,
        issuer: str = ISSUER,
        audience: str = AUDIENCE,
        algorithms: Iterable[str] = ALGORITHMS,
        remember: int = MAX_REMEMBERED,
    ):
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(a for a in algorithms if a in ALGORITHMS)
        self._remember = remember
        self._accepted: dict[str, _Accepted] = {}

    async def verify(self, token: str) -> Caller:
        """The caller a token names; ``InvalidToken``/``ExpiredToken``, or ``KeysUnavailable``."""
        accepted = self._accepted.get(token)
        if accepted is not None:
            # Only before its exp (verifying again would still allow the leeway after it), and
            # only while its kid names the very key that verified it: a key withdrawn from, or
            # replaced in, identity's JWKS takes its tokens' acceptance with it.
            if time.time() < accepted.expires and await self.keys.key(accepted.kid) is accepted.key:
                return accepted.caller
            self._accepted.pop(token, None)  # (another task may have dropped it meanwhile)
        caller, kid, key, expires = await self._verify(token)
        if time.time() < expires:
            if len(self._accepted) >= self._remember:
                del self._accepted[next(iter(self._accepted))]  # the oldest remembered
            self._accepted[token] = _Accepted(caller, kid, key, expires)
        return caller

    async def _verify(self, token: str) -> tuple[Caller, str, jwt.PyJWK, float]:
        """Check the token's signature and claims: the caller, the kid and key that verified
        it, and its ``exp``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise InvalidToken("malformed token") from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise InvalidToken(f"token algorithm {alg!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token has no key id")
        key = await self.keys.key(kid)
        if key is None:
            raise InvalidToken("token signed by an unknown key")
        if key.algorithm_name != alg:
            raise InvalidToken("token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ExpiredToken("token has expired") from exc
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("invalid token: no subject")
        roles = claims.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("invalid token: roles must be a list of strings")
        caller = Caller(user_id=subject, roles=frozenset(roles), token=token)
        return caller, kid, key, float(claims["exp"])


# -- wiring in a service ---------------------------------------------------------------------
_EXTRA = "mercato.auth.verifier"


def grpc_jwks_fetch(ctx: ServiceContext) -> JwksFetch:
    """Fetch the JWKS from identity over gRPC (``GetJwks``), with a deadline."""

    async def fetch() -> dict[str, Any]:
        from mercato.api.identity.v1 import identity_pb2, identity_pb2_grpc

        stub = identity_pb2_grpc.IdentityStub(ctx.channel("identity"))  # type: ignore[no-untyped-call]
        reply = await stub.GetJwks(identity_pb2.GetJwksRequest(), timeout=JWKS_DEADLINE)
        document = json.loads(reply.jwks_json)
        if not isinstance(document, dict):
            raise ValueError("GetJwks did not answer a JWKS object")
        return document

    return fetch


def install_verifier(ctx: ServiceContext, verifier: TokenVerifier) -> None:
    """Use this verifier in the service (identity installs one over its own keys)."""
    ctx.extras[_EXTRA] = verifier


def verifier_for(ctx: ServiceContext) -> TokenVerifier:
    """The service's verifier; by default over identity's JWKS fetched by gRPC."""
    verifier = ctx.extras.get(_EXTRA)
    if verifier is None:
        verifier = TokenVerifier(JwksCache(grpc_jwks_fetch(ctx)))
        ctx.extras[_EXTRA] = verifier
    assert isinstance(verifier, TokenVerifier)
    return verifier


def metadata_value(context: grpc.aio.ServicerContext[Any, Any], name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


async def require_caller(
    ctx: ServiceContext, context: grpc.aio.ServicerContext[Any, Any], role: str | None = None
) -> Caller:
    """The verified caller of a gRPC call, or the call is aborted with the right status."""
    import grpc

    try:
        token = bearer_token(metadata_value(context, "authorization"))
        caller = await verifier_for(ctx).verify(token)
    except AuthError as exc:
        await _abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
    except KeysUnavailable as exc:
        await _abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))
    if role is not None and not caller.has_role(role):
        await _abort(context, grpc.StatusCode.PERMISSION_DENIED, f"the {role} role is required")
    return caller


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises
