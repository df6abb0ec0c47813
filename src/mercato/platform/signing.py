"""Signing access tokens: identity's side of ``mercato.platform.auth`` (and tests' too).

A ``SigningKey`` wraps an Ed25519 (EdDSA) or RSA (RS256) private key, names it by its RFC 7638
JWK thumbprint (the ``kid``), publishes its public half as a JWK and issues access tokens that
``auth.TokenVerifier`` accepts. Tests of any service can make one, serve its JWKS through
``static_jwks`` and sign tokens for the roles they need, without running identity.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from mercato.platform.auth import AUDIENCE, ISSUER, JwksFetch
from mercato.platform.ids import new_id

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


class SigningKeyError(ValueError):
    """A configured private key that cannot be used."""


class SigningKey:
    def __init__(self, private_key: PrivateKey):
        self.private_key = private_key
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.algorithm = "EdDSA"
            public = json.loads(OKPAlgorithm.to_jwk(private_key.public_key()))
            members = {k: public[k] for k in ("crv", "kty", "x")}
        elif isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < 2048:
                raise SigningKeyError("an RSA signing key must have at least 2048 bits")
            self.algorithm = "RS256"
            public = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
            members = {k: public[k] for k in ("e", "kty", "n")}
        else:
            raise SigningKeyError("the signing key must be an Ed25519 or RSA private key")
        canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
        digest = hashlib.sha256(canonical).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        self._public_jwk = {**public, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SigningKey:
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"not an unencrypted PEM private key: {exc}") from None
        if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
            raise SigningKeyError("the signing key must be an Ed25519 or RSA private key")
        return cls(key)

    def to_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_jwk(self) -> dict[str, Any]:
        return dict(self._public_jwk)

    def issue(
        self,
        user_id: str,
        roles: list[str],
        ttl: timedelta,
        now: datetime | None = None,
        **claims: Any,
    ) -> str:
        """A signed access token for ``user_id`` with ``roles``, valid for ``ttl``."""
        issued = now or datetime.now(UTC)
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user_id,
            "roles": roles,
            "iat": issued,
            "exp": issued + ttl,
            "jti": new_id(),
            **claims,
        }
        return jwt.encode(
            payload, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid}
        )


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def static_jwks(*keys: SigningKey) -> JwksFetch:
    """A JWKS source over keys in hand (identity's own keys, tests)."""
    document = jwks_of(*keys)

    async def fetch() -> dict[str, Any]:
        return document

    return fetch
