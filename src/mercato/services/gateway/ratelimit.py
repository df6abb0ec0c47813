"""Per-client-address rate limits, kept in memory (the gateway keeps nothing durable).

A sliding window per (bucket, address). Several gateway replicas each count their own share,
which is enough to blunt password guessing; identity's per-account throttle stands behind it.
The address is the connection's peer; only when the peer is one of ``MERCATO_TRUSTED_PROXIES``
(none by default) is it taken from ``X-Forwarded-For``, so a client cannot forge it by a header.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from fastapi import Request

from mercato.services.gateway.problems import Problem

MAX_TRACKED = 100_000  # addresses remembered at most; the least recently seen go first


class RateLimiter:
    def __init__(self, limit: int, window: float = 60.0):
        self.limit = limit
        self.window = window
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str, now: float | None = None) -> float:
        """Count one request; 0 if allowed, else the seconds until one would be."""
        now = time.monotonic() if now is None else now
        hits = self._hits.pop(key, None) or deque()
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        self._hits[key] = hits
        if len(self._hits) > MAX_TRACKED:
            self._hits.popitem(last=False)
        if len(hits) >= self.limit:
            return hits[0] + self.window - now
        hits.append(now)
        return 0.0


def client_address(request: Request) -> str:
    """The client's address, as the limits count it."""
    return request.client.host if request.client else "unknown"


def enforce(request: Request, bucket: str, key: str, detail: str) -> None:
    """Count a request to ``bucket`` by ``key``: at most ``MERCATO_AUTH_RATE_LIMIT`` a minute,
    then 429 (``detail``) with Retry-After."""
    limiters: dict[str, RateLimiter] = request.app.state.rate_limiters
    limiter = limiters.get(bucket)
    if limiter is None:
        limiter = limiters[bucket] = RateLimiter(request.app.state.ctx.settings.auth_rate_limit)
    wait = limiter.hit(key)
    if wait > 0:
        raise Problem(429, detail, headers={"Retry-After": str(max(1, math.ceil(wait)))})


def limited(bucket: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: at most ``MERCATO_AUTH_RATE_LIMIT`` requests a minute per address
    to ``bucket``, then 429 with Retry-After."""

    async def check(request: Request) -> None:
        enforce(
            request,
            bucket,
            client_address(request),
            "too many attempts from this address; retry later",
        )

    return check


def limit_per_email(request: Request, bucket: str, email: str) -> None:
    """At most ``MERCATO_AUTH_RATE_LIMIT`` requests a minute naming ``email`` in ``bucket``
    (from any address): the answers say whether an email is registered."""
    enforce(request, bucket, email.strip().lower(), "too many attempts for this email; retry later")
