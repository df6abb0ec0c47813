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
_HEADER = HEADER.encode()
_ACCEPTED = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContext:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == _HEADER:
                given = value  # the last one, as a dict of the headers would keep
        request_id = given.decode("latin-1")
        if not _ACCEPTED.fullmatch(request_id):
            request_id = new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        header = (_HEADER, request_id.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        # bind/reset rather than bound_contextvars, which copies the whole context each time.
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
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
        finally:
            structlog.contextvars.reset_contextvars(**tokens)
