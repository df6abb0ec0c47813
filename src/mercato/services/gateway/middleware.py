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
# Browsers take a response for what its Content-Type says, never sniff a script out of it.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
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
        headers = [(_HEADER, request_id.encode()), _NOSNIFF]
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", ()), *headers]
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


class BodyLimit:
    """413 for a request body over ``limit`` bytes, before the body is read: at once when
    Content-Length says so, and for a body without a length (chunked) as soon as what arrives
    goes over (it is read here, up to the limit, and handed on)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: bytes | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._refuse(scope, receive, send)
                return
        elif chunked:
            messages: list[Message] = []
            size = 0
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request":
                    break
                size += len(message.get("body", b""))
                if size > self.limit:
                    await self._refuse(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
            replayed = iter(messages)

            async def again() -> Message:
                for message in replayed:
                    return message
                return await receive()

            receive = again
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem(413, f"the request body is over {self.limit} bytes")
        response = problem_response(Request(scope), problem)
        response.headers["Connection"] = "close"  # the unread body is not waited for
        await response(scope, receive, send)
