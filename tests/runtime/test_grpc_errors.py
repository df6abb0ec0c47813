"""An unexpected exception in a servicer reaches the caller as INTERNAL with a short message
(never the exception's text, which for a database error is the SQL); deliberate aborts pass."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from mercato.platform.runtime.grpc_errors import MESSAGE, HideInternalErrors

SECRET = "INSERT INTO wallets (user_id, balance) VALUES ('u-1', 1000000)"


async def boom(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    raise RuntimeError(SECRET * 3000)  # ~190 kB: more than gRPC's metadata limit


async def refuse(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort raises")


async def echo(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return request


async def stream_then_boom(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    yield b"first"
    raise RuntimeError(SECRET)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = grpc.aio.server(interceptors=[HideInternalErrors()])
    handlers = {
        "Boom": grpc.unary_unary_rpc_method_handler(boom),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Stream": grpc.unary_stream_rpc_method_handler(stream_then_boom),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.T", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(None)


async def test_an_unexpected_error_is_internal_with_a_short_message(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.T/Boom")(b"x")
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == MESSAGE


async def test_aborts_and_answers_pass_untouched(channel: grpc.aio.Channel) -> None:
    assert await channel.unary_unary("/test.T/Echo")(b"hello") == b"hello"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.T/Refuse")(b"x")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such thing"


async def test_a_stream_that_fails_midway_ends_internal(channel: grpc.aio.Channel) -> None:
    call = channel.unary_stream("/test.T/Stream")(b"x")
    assert await call.read() == b"first"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == MESSAGE
