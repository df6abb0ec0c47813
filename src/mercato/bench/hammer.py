"""The HTTP hammer: many concurrent clients sending one request after another for a while,
used alike on the bare endpoint and on the gateway so that their rates compare."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mercato.bench.client import FAILURES, Client, Response


@dataclass
class Hammered:
    requests: int = 0
    seconds: float = 0.0
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def error_kind(label: str, failure: Response | BaseException) -> str:
    """``GET products 503`` or ``GET products TimeoutError``: errors grouped by what failed."""
    if isinstance(failure, Response):
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

    async def client(http: Client, n: int) -> None:
        i = n
        while time.monotonic() < stop_at:
            try:
                response = await http.get(path(i), headers=headers)
            except FAILURES as exc:
                result.errors[error_kind(label, exc)] += 1
                continue
            if response.is_success:
                result.requests += 1
            else:
                result.errors[error_kind(label, response)] += 1
            i += clients

    started = time.monotonic()
    # One pool, a keep-alive connection per loop.
    async with Client(base_url, timeout=30, connections=clients) as http:
        await asyncio.gather(*(client(http, n) for n in range(clients)))
    result.seconds = time.monotonic() - started
    return result
