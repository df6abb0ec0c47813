"""The bench's one HTTP client, on aiohttp: the shoppers, the hammer (the bare endpoint and the
gateway alike), the WDM load and the set-up all send their requests through it.

The load generator shares the two cores with the system under test, so what a request costs
it matters: measured on the bare endpoint, aiohttp spends ≈ 0.25 ms of CPU per request where
httpx spent ≈ 2–3 ms (docs/performance.md)."""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp

# What a request can fail with instead of an answer: refused, reset or dropped connections
# (aiohttp's ClientError) and timeouts (TimeoutError and aiohttp's subclasses of it).
FAILURES = (aiohttp.ClientError, TimeoutError)

Query = Mapping[str, str | int | float]


@dataclass(frozen=True, slots=True)
class Response:
    """An answer read whole (the connection goes back to the pool at once)."""

    method: str
    path: str
    status_code: int
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Client:
    """Keep-alive connections to ``base_url`` (at most ``connections`` at once); ``timeout``
    bounds each request as a whole, unless the request gives its own."""

    def __init__(self, base_url: str = "", timeout: float = 60, connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(limit=self._connections)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Query | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """``path`` after the base URL (or a whole URL when the client has none)."""
        if self._session is None:
            raise RuntimeError("the client is used outside its `async with`")
        async with self._session.request(
            method,
            self.base_url + path,
            params=params,
            json=json,
            headers=headers,
            timeout=self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout),
        ) as response:
            return Response(method, path, response.status, await response.read())

    async def get(
        self,
        path: str,
        *,
        params: Query | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        return await self.request("GET", path, params=params, headers=headers, timeout=timeout)

    async def post(
        self,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        return await self.request("POST", path, json=json, headers=headers, timeout=timeout)
