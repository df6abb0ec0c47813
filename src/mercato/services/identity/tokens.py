"""Issuing tokens: short-lived signed access tokens, and opaque refresh tokens kept hashed."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from mercato.platform.signing import SigningKey


@dataclass(frozen=True)
class Issued:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds


@dataclass(frozen=True)
class Refused:
    """A login or refresh turned down. What caused it (a failure counted, a token family
    revoked) is committed before the caller hears ``message``."""

    reason: str
    message: str
    retry_after: int = 0


class TokenIssuer:
    def __init__(self, key: SigningKey, access_ttl: timedelta, refresh_ttl: timedelta):
        self.key = key
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def access_token(self, user_id: str, roles: list[str], now: datetime) -> str:
        return self.key.issue(user_id, roles, self.access_ttl, now=now)

    @staticmethod
    def new_refresh_token() -> tuple[str, str]:
        """A fresh refresh token and the hash it is stored under."""
        token = secrets.token_urlsafe(32)
        return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
