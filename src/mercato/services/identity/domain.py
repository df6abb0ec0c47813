"""Identity's rules: what a valid email, name, password and set of roles is; when a login waits.

Pure: no database, no clock of its own (``now`` is passed in), no infrastructure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

ROLES = ("customer", "admin")
MIN_PASSWORD = 8
MAX_PASSWORD = 128  # argon2 takes anything, but a megabyte "password" is a denial of service
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# A few that any guesser tries first; the character-class rule catches most of the rest.
_COMMON = {"password1", "passw0rd", "password123", "qwerty123", "12345678a", "iloveyou1"}


class Invalid(ValueError):
    """Bad input: the request cannot be carried out as given."""


def normalize_email(raw: str) -> str:
    email = raw.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email) or not email.isprintable():
        raise Invalid("not a valid email address")
    return email


def check_name(raw: str) -> str:
    name = raw.strip()
    if not 1 <= len(name) <= 200:
        raise Invalid("a name is 1 to 200 characters")
    if any(not c.isprintable() for c in name):
        raise Invalid("a name holds no control characters")
    return name


def check_password(password: str, email: str) -> None:
    """The password policy: 8 to 128 characters of at least two kinds (letters, digits,
    others), not a well-known one, and not built from the email's name."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise Invalid(f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    kinds = (
        any(c.isalpha() for c in password)
        + any(c.isdigit() for c in password)
        + any(not c.isalnum() for c in password)
    )
    if kinds < 2:
        raise Invalid("a password mixes at least two of: letters, digits, other characters")
    if password.lower() in _COMMON:
        raise Invalid("that password is one of the first any guesser tries")
    local = email.partition("@")[0]
    if len(local) >= 3 and local in password.lower():
        raise Invalid("a password does not contain its email's name (the part before the @)")


def check_user_id(raw: str) -> str:
    if not 1 <= len(raw) <= 64 or not raw.isascii() or not raw.isprintable() or " " in raw:
        raise Invalid("a user id is 1 to 64 printable ASCII characters without spaces")
    return raw


def check_roles(roles: Iterable[str]) -> list[str]:
    chosen = sorted(set(roles))
    if not chosen:
        raise Invalid("a user has at least one role")
    unknown = [r for r in chosen if r not in ROLES]
    if unknown:
        raise Invalid(f"unknown roles {unknown}; roles are {list(ROLES)}")
    return chosen


def throttle_key(email: str, address: str) -> str:
    """What failed logins are counted by: the account and the client's address together (an
    attacker's guesses make the attacker wait, not the owner signing in from elsewhere); the
    email alone when the address is not known. Hashed, to fit the email's column."""
    if not address:
        return email
    return hashlib.sha256(f"{address}\n{email}".encode()).hexdigest()


@dataclass(frozen=True)
class Throttle:
    """After ``max_failures`` failed logins in a row (from one address, for one account) the
    next attempt waits ``delay``, and each failure after that twice as long as the one before,
    up to ``lockout``. A success clears the count."""

    max_failures: int
    delay: timedelta
    lockout: timedelta

    def locked_until(self, failures: int, now: datetime) -> datetime | None:
        if failures < self.max_failures:
            return None
        doublings = min(failures - self.max_failures, 32)
        return now + min(self.lockout, self.delay * (1 << doublings))

    @staticmethod
    def seconds_left(locked_until: datetime | None, now: datetime) -> int:
        if locked_until is None or locked_until <= now:
            return 0
        return max(1, int((locked_until - now).total_seconds() + 0.999))
