"""The HTTP hammer: many concurrent clients sending one request after another for a while,
used alike on the bare endpoint and on the gateway so that their rates compare."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Hammered:
    requests: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def error_kind(label: str, failure: httpx.Response | BaseException) -> str:
    """``GET products 503`` or ``GET products ReadTimeout``: errors grouped by what failed."""
    if isinstance(failure, httpx.Response):
        return f"{label} {failure.status_code}"
    return f"{label} {type(failure).__name__}"


async def hammer(
    base_url: str,
    path: Callable[[int], str],
    seconds: float,
    clients: int,
    label: str = "GET",
    headers: dict[str, str] | None = None,
) -> Hammered:
    """``clients`` concurrent loops of GET ``path(i)`` for ``seconds``; 2xx are counted."""
    result = Hammered()
    stop_at = time.monotonic() + seconds

    async def client(n: int) -> None:
        # A client of its own per loop: one shared pool of many connections costs httpx
        # more than the requests (50 loops on one pool measured a quarter of 10).
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            i = n
            while time.monotonic() < stop_at:
                try:
                    response = await http.get(path(i), headers=headers)
                except httpx.HTTPError as exc:
                    result.errors[error_kind(label, exc)] += 1
                    continue
                if response.is_success:
                    result.requests += 1
                else:
                    result.errors[error_kind(label, response)] += 1
                i += clients

    started = time.monotonic()
    await asyncio.gather(*(client(n) for n in range(clients)))
    result.seconds = time.monotonic() - started
    return result
