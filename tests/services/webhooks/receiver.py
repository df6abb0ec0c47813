"""A webhook receiver on loopback, as an outside system runs one: an aiohttp server that checks
every request's signature with the Standard Webhooks library and keeps what it was sent."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    event: dict[str, Any]


@dataclass
class Receiver:
    """``secret`` verifies each request (a request that fails is answered 401 and kept in
    ``refused``); ``answer`` is the status it gives (with ``answer_body`` and
    ``answer_headers``); ``delay`` seconds before answering."""

    secret: str | None = None
    answer: int = 204
    delay: float = 0.0
    answer_body: bytes | None = None
    answer_headers: dict[str, str] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    refused: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    port: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.read()
            headers = {k.lower(): v for k, v in request.headers.items()}
            got = Received(headers.get("webhook-id", ""), headers, body, json.loads(body))
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.secret is not None:
                try:
                    Webhook(self.secret).verify(body, headers)
                except WebhookVerificationError:
                    self.refused.append(got)
                    return web.Response(status=401, text="bad signature")
            if 200 <= self.answer < 300:
                self.received.append(got)
            body = self.answer_body or (b"thanks" if self.answer < 300 else b"no")
            return web.Response(status=self.answer, body=body, headers=self.answer_headers)
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await self.up()

    async def up(self) -> None:
        """Listen (again, on the same port once it had one)."""
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            server: Any = self._site._server
            self.port = int(server.sockets[0].getsockname()[1])

    async def down(self) -> None:
        """Stop listening: connections are refused until ``up``."""
        assert self._site is not None
        await self._site.stop()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def events(self, subject: str | None = None) -> list[dict[str, Any]]:
        return [
            r.event for r in self.received if subject is None or r.event.get("subject") == subject
        ]
