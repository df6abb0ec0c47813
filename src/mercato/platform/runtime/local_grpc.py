"""Calls between services of one process, without the network: a gRPC channel in-process.

When several services run in one process (`mercato up`, or `serve` with more than one), a call
from one to another still went through grpc.aio: the request serialized, handed to gRPC's
C core, sent over the loopback, received by the server's own poller, then the answer back the
same way — about a millisecond of CPU per call, several calls per checkout. A ``LocalChannel``
stands in for ``grpc.aio.Channel`` there and calls the servicer's method handler directly.

What a caller sees is what it saw over the network: the request and the reply pass through
their serializers (a servicer can never alias the caller's message), metadata keys and values
are checked as gRPC checks them, the servicer runs in a task of its own with a fresh context
(as the gRPC server runs it), errors arrive as ``grpc.aio.AioRpcError`` with their code,
details and trailing metadata, a deadline cancels the servicer and ends in
DEADLINE_EXCEEDED, and an exception no servicer expected is logged and answered INTERNAL
(the same wrapper as the server's interceptor). The gRPC server still runs, for everyone
outside the process.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, NoReturn, cast

import grpc
import grpc.aio

from mercato.platform import tracing
from mercato.platform.runtime.grpc_errors import guarded_stream, guarded_unary

Metadata = Sequence[tuple[str, str | bytes]]


class LocalServices:
    """The method handlers of the services of this process, by full method name."""

    def __init__(self) -> None:
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        self._owners: dict[str, str] = {}  # method → the service serving it (for its spans)
        self._services: set[str] = set()
        self._channels: dict[str, LocalChannel] = {}

    def recording(self, server: grpc.aio.Server, service: str) -> grpc.aio.Server:
        """``server`` as the service's registration function sees it: everything is
        registered on it, and its method handlers are kept here too."""
        return cast("grpc.aio.Server", Recorder(server, self, service))

    def add(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._handlers.update(handlers)
        self._owners.update(dict.fromkeys(handlers, service))
        self._services.add(service)

    def __contains__(self, service: str) -> bool:
        return service in self._services

    def channel(self, caller: str = "") -> LocalChannel:
        """The channel ``caller`` (a service's name, for its spans) calls the others on."""
        channel = self._channels.get(caller)
        if channel is None:
            channel = self._channels[caller] = LocalChannel(self._handlers, self._owners, caller)
        return channel


class Recorder:
    """A ``grpc.aio.Server`` stand-in for registration only (what the generated
    ``add_…Servicer_to_server`` functions call)."""

    def __init__(self, server: grpc.aio.Server, local: LocalServices, service: str):
        self._server = server
        self._local = local
        self._service = service

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(
        self, name: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(name, handlers)
        self._local.add(
            self._service,
            {f"/{name}/{method}": handler for method, handler in handlers.items()},
        )


class LocalChannel:
    """The part of ``grpc.aio.Channel`` the generated stubs use."""

    def __init__(
        self,
        handlers: dict[str, grpc.RpcMethodHandler],
        owners: dict[str, str] | None = None,
        caller: str = "",
    ):
        self._handlers = handlers
        self._owners = owners if owners is not None else {}
        self._caller = caller

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool = False,
    ) -> Callable[..., Any]:
        handler = self._handlers.get(method)

        async def call(request: Any, **options: Any) -> Any:
            call = _Call(
                handler, method, request, request_serializer, response_deserializer, options
            )
            behaviour = guarded_unary(call.handler.unary_unary, method)

            async def serve() -> Any:
                return call.reply(await behaviour(call.request, call.context))

            # Cancelling the wait (the deadline, or the caller's own cancellation)
            # cancels the servicer's task too.
            serving = contextvars.Context()
            otel = tracing.otel
            rpc = (
                None
                if otel is None
                else otel.LocalRpc(self._caller, self._owners.get(method, ""), method, serving)
            )
            code = grpc.StatusCode.UNKNOWN
            task = asyncio.get_running_loop().create_task(serve(), context=serving)
            try:
                async with asyncio.timeout(call.timeout):
                    answer = await task
                code = grpc.StatusCode.OK
                return answer
            except TimeoutError:
                code = grpc.StatusCode.DEADLINE_EXCEEDED
                raise _error(code, "Deadline Exceeded") from None
            except grpc.aio.AbortError:
                error = call.context.error()
                code = error.code()
                raise error from None
            finally:
                if rpc is not None:
                    rpc.end(code)

        return call

    def unary_stream(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[bytes], Any] | None = None,
        _registered_method: bool = False,
    ) -> Callable[..., Any]:
        handler = self._handlers.get(method)

        def call(request: Any, **options: Any) -> LocalStream:
            call = _Call(
                handler, method, request, request_serializer, response_deserializer, options
            )
            replies = guarded_stream(call.handler.unary_stream, method)(call.request, call.context)
            return LocalStream(replies, call.context, call.reply, call.timeout)

        return call

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._unsupported(method)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        return self._unsupported(method)

    @staticmethod
    def _unsupported(method: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> NoReturn:
            raise _error(grpc.StatusCode.UNIMPLEMENTED, f"{method}: not callable in-process")

        return call


class LocalStream:
    """A server-streaming call: ``read()`` until ``grpc.aio.EOF``, ``async for``, ``cancel()``.
    The servicer's generator runs in a task of its own, a reply ahead at most."""

    def __init__(
        self,
        replies: AsyncGenerator[Any, None],
        context: _Context,
        convert: Callable[[Any], Any],
        timeout: float | None,
    ):
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)
        self._context = context
        self._task = asyncio.get_running_loop().create_task(
            self._pump(replies, convert, timeout), context=contextvars.Context()
        )

    async def _pump(
        self,
        replies: AsyncGenerator[Any, None],
        convert: Callable[[Any], Any],
        timeout: float | None,
    ) -> None:
        try:
            try:
                async with asyncio.timeout(timeout):
                    async for reply in replies:
                        await self._queue.put(convert(reply))
                ending: Any = grpc.aio.EOF
            except TimeoutError:
                ending = _error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
            except grpc.aio.AbortError:
                ending = self._context.error()
            await self._queue.put(ending)
        except asyncio.CancelledError:
            # The call was cancelled: what is unread no longer matters.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(_error(grpc.StatusCode.CANCELLED, "Locally cancelled"))
            raise
        finally:
            await replies.aclose()

    async def read(self) -> Any:
        item = await self._queue.get()
        if isinstance(item, grpc.aio.AioRpcError):
            self._queue.put_nowait(item)  # every later read ends the same way
            raise item
        if item is grpc.aio.EOF:
            self._queue.put_nowait(item)
        return item

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while (reply := await self.read()) is not grpc.aio.EOF:
            yield reply

    def cancel(self) -> bool:
        return self._task.cancel()


class _Call:
    """One call's parts: the servicer's handler, its context, the request as the servicer
    gets it (serialized and parsed again), and how a reply reaches the caller. ``options``
    are the multicallable's keywords: ``timeout`` and ``metadata`` count, the rest
    (``wait_for_ready``, ``compression``) mean nothing in-process."""

    def __init__(
        self,
        handler: grpc.RpcMethodHandler | None,
        method: str,
        request: Any,
        serialize: Callable[[Any], bytes] | None,
        deserialize: Callable[[bytes], Any] | None,
        options: dict[str, Any],
    ):
        self.handler = _need(handler, method)
        self.timeout: float | None = options.get("timeout")
        self.context = _Context(options.get("metadata"), self.timeout)
        self.request = _convert(request, serialize, self.handler.request_deserializer)
        self._deserialize = deserialize

    def reply(self, message: Any) -> Any:
        return _convert(message, self.handler.response_serializer, self._deserialize)


class _Context:
    """The part of ``grpc.aio.ServicerContext`` the servicers use."""

    def __init__(self, metadata: Metadata | None, timeout: float | None):
        self._metadata = tuple(_checked(metadata or ()))
        self._deadline = time.monotonic() + timeout if timeout is not None else None
        self._code = grpc.StatusCode.UNKNOWN
        self._details = ""
        self._trailing: tuple[tuple[str, str | bytes], ...] = ()

    def code(self) -> grpc.StatusCode:
        return self._code

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata

    def set_trailing_metadata(self, metadata: Metadata) -> None:
        self._trailing = tuple(_checked(metadata))

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Metadata = ()
    ) -> NoReturn:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort with StatusCode.OK")
        self._code, self._details = code, details
        if trailing_metadata:
            self.set_trailing_metadata(trailing_metadata)
        raise grpc.aio.AbortError()

    def error(self) -> grpc.aio.AioRpcError:
        return _error(self._code, self._details, self._trailing)


def _checked(metadata: Metadata) -> list[tuple[str, str | bytes]]:
    """gRPC's own rules: lowercase ASCII keys; text values printable ASCII (binary only
    under keys ending in ``-bin``)."""
    pairs = []
    for key, value in metadata:
        if not key or key != key.lower() or not key.isascii() or not key.isprintable():
            raise _error(grpc.StatusCode.INTERNAL, f"metadata key {key!r} is invalid")
        if not key.endswith("-bin") and not (
            isinstance(value, str) and value.isascii() and value.isprintable()
        ):
            raise _error(grpc.StatusCode.INTERNAL, f"metadata value of {key!r} is invalid")
        pairs.append((key, value))
    return pairs


def _need(handler: grpc.RpcMethodHandler | None, method: str) -> grpc.RpcMethodHandler:
    if handler is None:
        raise _error(grpc.StatusCode.UNIMPLEMENTED, f"Method not found: {method}")
    return handler


def _convert(
    message: Any, serialize: Callable[[Any], bytes] | None, parse: Callable[[bytes], Any] | None
) -> Any:
    data = serialize(message) if serialize is not None else message
    return parse(data) if parse is not None else data


def _error(code: grpc.StatusCode, details: str, trailing: Metadata = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details
    )
