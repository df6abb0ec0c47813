"""Request ids (``X-Request-ID`` in and out, in every log line) and the last-resort error net.

Pure ASGI (not ``BaseHTTPMiddleware``), so streamed responses (server-sent events) pass through
untouched.
"""

from __future__ import annotations

import re

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.platform.ids import new_id
from mercato.services.gateway.problems import Problem, problem_response

log = structlog.get_logger(__name__)

HEADER = "x-request-id"
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContext:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", ())).get(HEADER.encode(), b"").decode("latin-1")
        request_id = given if _ACCEPTED.match(given) else new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (HEADER.encode(), request_id.encode()),
                ]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                log.exception("unhandled error", path=scope.get("path"))
                if started:
                    raise
                response = problem_response(
                    Request(scope), Problem(500, "an unexpected error; it has been logged")
                )
                await response(scope, receive, send_with_id)
