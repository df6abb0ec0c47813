"""The ``Operations`` gRPC API every service's host serves beside the service's own: its dead
letters and its health, for the gateway's admin routes (``mercato dlq`` reads the databases
and calls the same functions of ``dead_letters``). Admin only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
from sqlalchemy import Row

from mercato.api.operations.v1 import operations_pb2 as pb
from mercato.api.operations.v1 import operations_pb2_grpc
from mercato.platform import dead_letters as letters
from mercato.platform.auth import require_caller
from mercato.platform.inbox import InboxConsumer
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.times import rfc3339
from mercato.platform.waits import within

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
MAX_PAGE = 500
NAME = pb.DESCRIPTOR.services_by_name["Operations"].full_name


def letter_reply(row: Row[Any], whole: bool = False) -> pb.DeadLetter:
    """A letter as the API shows it; ``whole``: with its headers and body."""
    reply = pb.DeadLetter(
        id=row.id,
        service=row.consumer,
        event_type=row.event_type or "",
        event_id=row.event_id or "",
        error=row.error,
        attempts=row.attempts,
        first_failed_at=rfc3339(row.first_failed_at or row.failed_at),
        last_failed_at=rfc3339(row.failed_at),
        status=letters.shown_status(row.status),
        discard_reason=row.discard_reason or "",
        discarded_at=_time(row.discarded_at),
        redriven_at=_time(row.redriven_at),
    )
    if whole:
        reply.headers.update(letters.headers_of(row))
        reply.body = bytes(row.body)
    return reply


def _time(moment: datetime | None) -> str:
    return "" if moment is None else rfc3339(moment)


class OperationsApi(operations_pb2_grpc.OperationsServicer):
    def __init__(
        self,
        ctx: ServiceContext,
        consumer: InboxConsumer | None,
        ready: Callable[[], Awaitable[None]],
    ):
        self.ctx = ctx
        self.consumer = consumer
        self.ready = ready

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Context
    ) -> pb.ListDeadLettersReply:
        await require_caller(self.ctx, context, role="admin")
        if request.status and request.status not in letters.SHOWN:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "status: open|redriven|discarded"
            )
        limit = request.limit or 50
        if not 1 <= limit <= MAX_PAGE:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 1..{MAX_PAGE}")
        before = None
        if request.before_failed_at or request.before_id:
            try:
                moment = datetime.fromisoformat(request.before_failed_at.replace("Z", "+00:00"))
            except ValueError:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a malformed cursor")
            if moment.tzinfo is None or not request.before_id:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a malformed cursor")
            before = letters.Cursor(moment, request.before_id)
        rows = await letters.list_dead_letters(
            self.ctx.db,
            status=request.status or None,
            event_type=request.event_type or None,
            limit=limit,
            before=before,
        )
        return pb.ListDeadLettersReply(letters=[letter_reply(r) for r in rows])

    async def GetDeadLetter(self, request: pb.DeadLetterRequest, context: Context) -> pb.DeadLetter:
        await require_caller(self.ctx, context, role="admin")
        return await self._answer(context, request.id, await self._find(request.id))

    async def RedriveDeadLetter(
        self, request: pb.DeadLetterRequest, context: Context
    ) -> pb.DeadLetter:
        await require_caller(self.ctx, context, role="admin")
        if self.consumer is None:  # no handlers here: it cannot hold a letter of its own
            return await self._answer(context, request.id, None)
        try:
            row = await letters.redrive_now(self.ctx.db, self.consumer, request.id)
        except letters.NotOpen as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return await self._answer(context, request.id, row)

    async def DiscardDeadLetter(
        self, request: pb.DiscardDeadLetterRequest, context: Context
    ) -> pb.DeadLetter:
        await require_caller(self.ctx, context, role="admin")
        try:
            row = await letters.discard(self.ctx.db, request.id, request.reason)
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except letters.NotOpen as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return await self._answer(context, request.id, row)

    async def GetStatus(self, request: pb.GetStatusRequest, context: Context) -> pb.ServiceStatus:
        await require_caller(self.ctx, context, role="admin")
        reply = pb.ServiceStatus(service=self.ctx.name, ready=True)
        try:
            await within(2.0, self.ready())
        except Exception as exc:
            reply.ready = False
            reply.not_ready_reason = f"{type(exc).__name__}: {exc}"[:300]
            return reply  # its database may be what is down: nothing more to read
        backlog, age = await letters.outbox_backlog(self.ctx.db)
        reply.outbox_backlog = backlog
        reply.oldest_unsent_age_seconds = age
        reply.open_dead_letters = await letters.count_dead(self.ctx.db)
        return reply

    async def _find(self, letter_id: str) -> Row[Any] | None:
        return await letters.find_dead_letter(self.ctx.db, letter_id)

    async def _answer(
        self, context: Context, letter_id: str, row: Row[Any] | None
    ) -> pb.DeadLetter:
        if row is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"{self.ctx.name} has no dead letter {letter_id!r}",
            )
        return letter_reply(row, whole=True)


async def _abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover - abort always raises
