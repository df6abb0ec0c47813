"""What a caller sees of a servicer, over the network and over the in-process channel alike:
an unexpected exception arrives as INTERNAL with a short message (never the exception's text,
which for a database error is the SQL), a lost database connection as UNAVAILABLE; deliberate
aborts, trailing metadata, deadlines, unknown methods and bad metadata end the same way on both
channels."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import grpc
import grpc.aio
import pytest
from grpc._cython.cygrpc import ExecuteBatchError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError

from mercato.platform.runtime.grpc_errors import DATABASE_LOST, MESSAGE, HideInternalErrors
from mercato.platform.runtime.local_grpc import LocalServices
from mercato.platform.storage.database import ensure_database, open_database, service_url
from mercato.platform.storage.sql import Database, connection_lost
from mercato.services.gateway.upstream import STATUS
from tests.conftest import eventually

SECRET = "INSERT INTO wallets (user_id, balance) VALUES ('u-1', 1000000)"
Context = grpc.aio.ServicerContext[Any, Any]
cancelled: list[str] = []


async def boom(request: bytes, context: Context) -> bytes:
    raise RuntimeError(SECRET * 3000)  # ~190 kB: more than gRPC's metadata limit


async def refuse(request: bytes, context: Context) -> bytes:
    context.set_trailing_metadata((("retry-after", "7"),))
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort raises")


async def echo(request: bytes, context: Context) -> bytes:
    token = dict(context.invocation_metadata() or ()).get("authorization", "")
    return request + token.encode()


async def slow(request: bytes, context: Context) -> bytes:
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        cancelled.append("slow")
        raise
    return request


async def stream_then_boom(request: bytes, context: Context) -> AsyncIterator[bytes]:
    yield b"first"
    yield b"second"
    raise RuntimeError(SECRET)


async def stream_forever(request: bytes, context: Context) -> AsyncIterator[bytes]:
    try:
        while True:
            yield b"tick"
            await asyncio.sleep(0.01)
    finally:
        cancelled.append("stream")


databases: list[Database] = []  # the one the Sleep servicer reads, set by its test


async def sleep_in_the_database(request: bytes, context: Context) -> bytes:
    async with databases[0].connect() as conn:
        await conn.execute(select(func.pg_sleep(float(request.decode()))))
    return b"slept"


@pytest.fixture(params=["network", "in-process"])
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    server = grpc.aio.server(interceptors=[HideInternalErrors()])
    handlers = {
        "Boom": grpc.unary_unary_rpc_method_handler(boom),
        "Refuse": grpc.unary_unary_rpc_method_handler(refuse),
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Stream": grpc.unary_stream_rpc_method_handler(stream_then_boom),
        "Forever": grpc.unary_stream_rpc_method_handler(stream_forever),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep_in_the_database),
    }
    local = LocalServices()
    local.recording(server, "test").add_registered_method_handlers("test.T", handlers)
    cancelled.clear()
    if request.param == "in-process":
        assert "test" in local
        yield local.channel()
        return
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch
    await server.stop(None)


async def test_an_unexpected_error_is_internal_with_a_short_message(channel: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.T/Boom")(b"x")
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == MESSAGE


async def test_aborts_and_answers_pass_untouched(channel: Any) -> None:
    echo_call = channel.unary_unary("/test.T/Echo")
    assert await echo_call(b"hello") == b"hello"
    assert await echo_call(b"as ", metadata=(("authorization", "Bearer t"),)) == b"as Bearer t"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.T/Refuse")(b"x")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such thing"
    assert ("retry-after", "7") in tuple(caught.value.trailing_metadata())


async def test_a_deadline_ends_the_call_and_the_servicer(channel: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.T/Slow")(b"x", timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    for _ in range(100):
        if cancelled:
            break
        await asyncio.sleep(0.02)
    assert cancelled == ["slow"]


async def test_an_unknown_method_is_unimplemented(channel: Any) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary("/test.T/Nothing")(b"x")
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_metadata_gRPC_would_refuse_is_refused(channel: Any) -> None:
    # grpc.aio refuses it before sending (with an error of its C core's); never delivered.
    refused = (grpc.aio.AioRpcError, ExecuteBatchError)
    with pytest.raises(refused):
        await channel.unary_unary("/test.T/Echo")(b"x", metadata=(("authorization", "a\nb"),))
    with pytest.raises(refused):
        await channel.unary_unary("/test.T/Echo")(b"x", metadata=(("Upper", "v"),))


async def test_a_stream_that_fails_midway_ends_internal(channel: Any) -> None:
    call = channel.unary_stream("/test.T/Stream")(b"x")
    assert await call.read() == b"first"
    assert await call.read() == b"second"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert caught.value.details() == MESSAGE


async def test_a_cancelled_stream_stops_its_servicer(channel: Any) -> None:
    call = channel.unary_stream("/test.T/Forever")(b"x")
    assert [await call.read() for _ in range(3)] == [b"tick"] * 3
    call.cancel()
    for _ in range(100):
        if cancelled:
            break
        await asyncio.sleep(0.02)
    assert cancelled == ["stream"]


async def test_a_terminated_database_connection_is_unavailable_and_the_next_call_works(
    channel: Any, postgres_template: str, tmp_path: Path
) -> None:
    """pg_terminate_backend under a call: UNAVAILABLE with retry-after (the gateway's 503),
    not INTERNAL (its 502); the pool has dropped the connection, so the next call works."""
    url = service_url(postgres_template, "sleeper", tmp_path)
    await ensure_database(url)
    databases[:] = [open_database(url)]
    admin = await asyncpg.connect(postgres_template.replace("{service}", "sleeper"))
    try:
        call = asyncio.ensure_future(channel.unary_unary("/test.T/Sleep")(b"30"))
        query = (
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE '%pg_sleep%'"
            " AND pid <> pg_backend_pid()"
        )
        pids = await eventually(lambda: admin.fetch(query, url.database))
        for row in pids:  # only this test's database's backends
            await admin.execute("SELECT pg_terminate_backend($1)", row["pid"])
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call, 20)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
        assert caught.value.details() == DATABASE_LOST
        assert ("retry-after", "1") in tuple(caught.value.trailing_metadata())
        assert STATUS[caught.value.code()] == 503
        assert await channel.unary_unary("/test.T/Sleep")(b"0") == b"slept"
    finally:
        await admin.close()
        await databases.pop().dispose()


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (OSError(111, "Connection refused"), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.exceptions.InterfaceError("connection is closed"), True),
        (OperationalError("SELECT 1", (), sqlite3.OperationalError("database is locked")), True),
        (asyncpg.exceptions.UndefinedTableError('relation "x" does not exist'), False),
        (IntegrityError("INSERT", (), asyncpg.exceptions.UniqueViolationError("dup")), False),
        (OperationalError("SELECT", (), sqlite3.OperationalError("no such table: x")), False),
        (ValueError("a bug"), False),
    ],
)
def test_which_errors_are_a_lost_database_connection(error: Exception, lost: bool) -> None:
    assert connection_lost(error) is lost
