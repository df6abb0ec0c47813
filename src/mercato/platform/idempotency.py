"""Idempotency keys: a retried request with the same key and body gets the same answer.

The gateway forwards a client's ``Idempotency-Key`` header as gRPC metadata
``idempotency-key``. A servicer that creates something runs its work through ``run_once``::

    from mercato.platform.idempotency import grpc_run_once

    async def Checkout(self, request, context):
        caller = await require_caller(self.ctx, context)

        async def work(uow: UnitOfWork) -> cart_pb2.CheckoutReply:
            ...  # state through uow.conn, events through uow.publish
            return cart_pb2.CheckoutReply(order_id=order_id)

        return await grpc_run_once(
            self.ctx, context, scope=f"cart.Checkout:{caller.user_id}", request=request,
            work=work, decode=cart_pb2.CheckoutReply.FromString,
        )

The key's row (scope, key, a fingerprint of the request, the encoded response) is written in
the same transaction as the work, so either both are there or neither. The row is claimed
*before* the work, by an ``INSERT … ON CONFLICT DO NOTHING``: a concurrent request with the
same key waits on it (PostgreSQL: on the primary key, until the claim's transaction ends;
SQLite: on the write lock), finds the key taken and replays the answer instead of doing the
work twice (or claims the key itself if that transaction rolled back). The same key with a
different request is ``IdempotencyKeyReused`` (HTTP 422; over gRPC INVALID_ARGUMENT). Without
a key the work simply runs in one transaction.

Put the caller in ``scope`` so two users' keys never meet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from google.protobuf.message import Message
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.platform.storage.sql import Connection
from mercato.platform.storage.tables import idempotency_keys
from mercato.platform.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    import grpc.aio

    from mercato.platform.runtime.service import ServiceContext

R = TypeVar("R")
METADATA_KEY = "idempotency-key"
MAX_KEY_LENGTH = 200


class IdempotencyError(ValueError):
    pass


class BadIdempotencyKey(IdempotencyError):
    pass


class IdempotencyKeyReused(IdempotencyError):
    """The key was used before with a different request."""


def check_key(key: str) -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise BadIdempotencyKey(
            f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


def fingerprint(request: Any) -> str:
    """A stable hash of a request: a protobuf message, bytes, text or JSON-able data."""
    if isinstance(request, Message):
        data = request.SerializeToString(deterministic=True)
    elif isinstance(request, bytes):
        data = request
    elif isinstance(request, str):
        data = request.encode()
    else:
        data = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(data).hexdigest()


def _encode(result: Any) -> bytes:
    if isinstance(result, Message):
        return bytes(result.SerializeToString())
    if isinstance(result, bytes):
        return result
    raise TypeError("pass encode= for a response that is not a protobuf message")


# Built once: building a statement per call costs more CPU than running it.
_THE_KEY = (
    idempotency_keys.c.scope == bindparam("b_scope"),
    idempotency_keys.c.key == bindparam("b_key"),
)
# The claim: nothing if the key is taken.
_CLAIM = {
    "postgresql": postgresql.insert(idempotency_keys).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(idempotency_keys).on_conflict_do_nothing(),
}
_STORED = select(idempotency_keys.c.fingerprint, idempotency_keys.c.response).where(*_THE_KEY)
_ANSWER = update(idempotency_keys).where(*_THE_KEY).values(response=bindparam("b_response"))


async def run_once(
    transaction: Callable[[], AbstractAsyncContextManager[UnitOfWork]],
    *,
    scope: str,
    key: str | None,
    request: Any,
    work: Callable[[UnitOfWork], Awaitable[R]],
    decode: Callable[[bytes], R],
    encode: Callable[[R], bytes] = _encode,
) -> R:
    """Run ``work`` once per (scope, key); a repeat returns the first answer, decoded."""
    if key is None:
        async with transaction() as uow:
            return await work(uow)
    check_key(key)
    digest = fingerprint(request)
    the_key = {"b_scope": scope, "b_key": key}
    for _attempt in (1, 2):
        async with transaction() as uow:
            claim = {
                "scope": scope,
                "key": key,
                "fingerprint": digest,
                "response": b"",
                "created_at": datetime.now(UTC),
            }
            if (await uow.conn.execute(_CLAIM[uow.conn.dialect.name], claim)).rowcount:
                result = await work(uow)
                await uow.conn.execute(_ANSWER, {**the_key, "b_response": encode(result)})
                return result
            row = (await uow.conn.execute(_STORED, the_key)).first()
            if row is not None:
                if row.fingerprint != digest:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was already used with a different request"
                    )
                return decode(row.response)
        # Taken, then forgotten (forget_older_than) between the two statements: claim again.
    raise RuntimeError(f"idempotency key {key!r} of {scope!r} could not be claimed")


async def forget_older_than(conn: Connection, age: timedelta) -> int:
    """Drop keys older than ``age`` (clients retry within minutes, not days)."""
    result = await conn.execute(
        delete(idempotency_keys).where(idempotency_keys.c.created_at < datetime.now(UTC) - age)
    )
    return int(result.rowcount or 0)


# -- in a grpc.aio servicer ----------------------------------------------------------------
def key_from(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == METADATA_KEY:
            return value if isinstance(value, str) else value.decode()
    return None


async def grpc_run_once(
    ctx: ServiceContext,
    context: grpc.aio.ServicerContext[Any, Any],
    *,
    scope: str,
    request: Any,
    work: Callable[[UnitOfWork], Awaitable[R]],
    decode: Callable[[bytes], R],
    encode: Callable[[R], bytes] = _encode,
) -> R:
    """``run_once`` with the call's ``idempotency-key``; a bad or reused key aborts the call
    with INVALID_ARGUMENT (the gateway answers 422)."""
    import grpc

    try:
        return await run_once(
            ctx.transaction,
            scope=scope,
            key=key_from(context),
            request=request,
            work=work,
            decode=decode,
            encode=encode,
        )
    except IdempotencyError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise  # pragma: no cover - abort raises
