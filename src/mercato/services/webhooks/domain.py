"""webhooks' rules, without I/O: secrets and signatures (Standard Webhooks), the retry
schedule, the addresses a target may not reach, what a subscription may ask for."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import random
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
EVERY_TYPE = "*"
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


class SubscriptionError(ValueError):
    """What an admin asked for cannot be: the message says why."""


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes one: ``whsec_`` + base64 of 24 bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` + base64(HMAC-SHA256(key, ``id.timestamp.body``))."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signatures(secrets_: Iterable[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: one ``v1,`` signature per secret, space-separated
    (the new secret and, during a rotation's overlap, the old one)."""
    return " ".join(signature(s, webhook_id, timestamp, body) for s in secrets_)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Exponential backoff with jitter: after the n-th failed attempt the delivery waits
    between half and all of ``base × 2ⁿ⁻¹`` (at most ``longest``); after ``attempts`` it is
    dead."""

    attempts: int
    base: float
    longest: float

    def delay(self, failed: int, rng: random.Random | None = None) -> float | None:
        """Seconds before the next attempt after ``failed`` attempts; None: it is dead."""
        if failed >= self.attempts:
            return None
        full = float(min(self.base * 2 ** (failed - 1), self.longest))
        return full * (0.5 + 0.5 * (rng or random).random())


def forbidden_address(address: str) -> str | None:
    """Why a target may not be reached at ``address`` (None: it may)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, test in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
    ):
        if test:
            return f"{address} is a {kind} address"
    return None


def literal_address(host: str) -> str | None:
    """``host`` when it is an IP address written out (no name to resolve)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]").split("%", 1)[0]))
    except ValueError:
        return None


def target_host(url: str) -> str:
    """The host of a valid target URL (http or https, a host, at most 2000 characters)."""
    if len(url) > 2000:
        raise SubscriptionError("the target URL is longer than 2000 characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise SubscriptionError(f"the target URL is not valid: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise SubscriptionError("the target URL must be http:// or https://")
    if not parts.hostname:
        raise SubscriptionError("the target URL has no host")
    if parts.fragment:
        raise SubscriptionError("the target URL may not have a fragment")
    return parts.hostname


def event_types(asked: Sequence[str], known: Iterable[str]) -> list[str]:
    """The event types a subscription asks for, checked: known names, or ``*`` alone."""
    chosen = sorted({t.strip() for t in asked if t.strip()})
    if not chosen:
        raise SubscriptionError("eventTypes: name at least one event type, or '*' for all")
    if EVERY_TYPE in chosen:
        if len(chosen) > 1:
            raise SubscriptionError("eventTypes: '*' already means every type; name it alone")
        return chosen
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise SubscriptionError(f"eventTypes: unknown event type(s): {', '.join(unknown)}")
    return chosen


def wants(
    types: Sequence[str], subject_filter: str | None, event_type: str, subject: str | None
) -> bool:
    """Whether a subscription asks for an event of ``event_type`` about ``subject``."""
    if subject_filter and subject_filter != subject:
        return False
    return EVERY_TYPE in types or event_type in types
