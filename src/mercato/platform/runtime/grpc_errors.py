"""A gRPC server interceptor for the errors no servicer expected.

grpc.aio answers an unhandled exception with UNKNOWN and ``str(exception)`` as the details:
for a database error that is the whole SQL statement with its parameters, which leaks internals
and can exceed the metadata limit (the caller then sees RESOURCE_EXHAUSTED, which the gateway
would answer as 429). This interceptor logs the exception with its traceback and answers
INTERNAL with a short message instead; deliberate aborts (``context.abort``) pass untouched.
A lost database connection (the server ended it, the database is restarting or unreachable,
SQLite's file stayed locked) is not a fault of the call: it is answered UNAVAILABLE with a
``retry-after`` of one second, which the gateway turns into 503 with Retry-After; the call is
not retried here (a write may or may not have committed; the caller decides, and the
Idempotency-Key makes a retried write safe). The pool has already dropped the dead
connection, so the next call gets a live one.
The in-process channel (``local_grpc``) wraps the servicers the same way. Every unary call's
time is observed here, by method and status code (``mercato_grpc_server_duration_seconds``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any

import grpc
import grpc.aio
import structlog

from mercato.platform.metrics import grpc_seconds
from mercato.platform.storage.sql import connection_lost

log = structlog.get_logger(__name__)

MESSAGE = "an internal error; it has been logged"
DATABASE_LOST = "the service's database connection was lost; retry"


async def _answer(context: grpc.aio.ServicerContext[Any, Any], method: str, exc: Exception) -> None:
    """Abort the call for ``exc``, which no servicer expected."""
    if connection_lost(exc):
        log.warning("database connection lost in a gRPC call", method=method, error=str(exc))
        await context.abort(grpc.StatusCode.UNAVAILABLE, DATABASE_LOST, (("retry-after", "1"),))
    log.exception("unexpected error in a gRPC call", method=method)
    await context.abort(grpc.StatusCode.INTERNAL, MESSAGE)


class HideInternalErrors(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                guarded_unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                guarded_stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # no client-streaming calls here


def guarded_unary(behaviour: Any, method: str) -> Any:
    """``behaviour`` (a unary servicer method) answering INTERNAL for what it did not expect."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started = perf_counter()
        code = "OK"
        try:
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            code = _code_name(context)
            raise
        except Exception as exc:
            code = "UNAVAILABLE" if connection_lost(exc) else "INTERNAL"
            await _answer(context, method, exc)
        finally:
            grpc_seconds(method, code).observe(perf_counter() - started)

    return call


def _code_name(context: Any) -> str:
    """The status code a servicer aborted with."""
    try:
        code = context.code()
    except Exception:  # not every context says
        code = None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def guarded_stream(behaviour: Any, method: str) -> Any:
    """The same for a server-streaming servicer method."""

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
            async for reply in behaviour(request, context):
                yield reply
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _answer(context, method, exc)

    return call
