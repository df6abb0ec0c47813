"""The operator's routes (admin): every service's dead letters, and the system's health.

Each service keeps its own dead letters in its own database and answers for them through the
platform's ``Operations`` gRPC API (served by every service's host); these routes ask each
service in turn, or the one a letter's id names (``inventory.0190…``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from mercato.api.operations.v1 import operations_pb2 as pb
from mercato.api.operations.v1.operations_pb2_grpc import OperationsStub
from mercato.platform.dead_letters import MAX_REASON, envelope_of, parse_id, public_id, readable
from mercato.services.gateway.inputs import Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.security import AdminCaller
from mercato.services.gateway.upstream import Gateway, Upstream

router = APIRouter(prefix="/api/v1/admin", tags=["operations"], responses=PROBLEM_RESPONSES)

Status = Literal["open", "redriven", "discarded"]
LetterId = Annotated[str, Path(min_length=3, max_length=200)]


class DeadLetter(BaseModel):
    id: str = Field(description="Opaque; names the service that holds the letter")
    service: str
    eventType: str | None
    eventId: str | None
    error: str = Field(description="The last failure")
    attempts: int
    firstFailedAt: str
    lastFailedAt: str
    status: Status


class DeadLetterDetail(DeadLetter):
    envelope: dict[str, Any] | None = Field(
        description="The event as a structured CloudEvent; null when the message is not one"
    )
    discardReason: str | None
    discardedAt: str | None
    redrivenAt: str | None
    headers: dict[str, str] = Field(description="As they came off the broker")
    body: str = Field(description="As it came off the broker; bytes not UTF-8 as escapes")


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    nextCursor: str | None


class Discard(Input):
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON)]


class ServiceHealth(BaseModel):
    name: str
    ready: bool
    reason: str | None = Field(description="Why it is not ready")
    outboxBacklog: int | None = Field(description="Events written, not yet sent to the broker")
    oldestUnsentAgeSeconds: float | None
    deadLetters: int | None = Field(description="Open dead letters")


class SystemHealth(BaseModel):
    services: list[ServiceHealth]


def _services(upstream: Gateway) -> list[str]:
    """Every service the gateway knows an address of (itself included: a ServiceHost too)."""
    return list(upstream.ctx.grpc_targets)


async def _ask(upstream: Gateway, service: str, method: str, message: Any) -> Any:
    return await upstream.call(service, OperationsStub, method, message, in_process=False)


def _summary(letter: pb.DeadLetter) -> DeadLetter:
    return DeadLetter(
        id=public_id(letter.service, letter.id),
        service=letter.service,
        eventType=letter.event_type or None,
        eventId=letter.event_id or None,
        error=letter.error,
        attempts=letter.attempts,
        firstFailedAt=letter.first_failed_at,
        lastFailedAt=letter.last_failed_at,
        status=letter.status,
    )


def _detail(letter: pb.DeadLetter) -> DeadLetterDetail:
    headers = dict(letter.headers)
    return DeadLetterDetail(
        **_summary(letter).model_dump(),
        envelope=envelope_of(headers, letter.body),
        discardReason=letter.discard_reason or None,
        discardedAt=letter.discarded_at or None,
        redrivenAt=letter.redriven_at or None,
        headers={readable(k): readable(v) for k, v in headers.items()},
        body=readable(letter.body),
    )


def _cursor(letter: pb.DeadLetter) -> str:
    raw = json.dumps([letter.last_failed_at, letter.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _from_cursor(cursor: str) -> tuple[str, str]:
    try:
        failed_at, letter_id = json.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
        if isinstance(failed_at, str) and isinstance(letter_id, str):
            return failed_at, letter_id
    except (binascii.Error, ValueError, TypeError):
        pass
    raise Problem(422, "cursor: not one this API gave")


def _order(letter: pb.DeadLetter) -> tuple[datetime, str]:
    return datetime.fromisoformat(letter.last_failed_at.replace("Z", "+00:00")), letter.id


@router.get("/dead-letters", summary="Dead letters of every service, newest failure first")
async def list_dead_letters(
    caller: AdminCaller,
    upstream: Upstream,
    service: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    type: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(min_length=1, max_length=400)] = None,
) -> DeadLetterPage:
    names = _services(upstream)
    if service is not None and service not in names:
        raise Problem(422, f"service: unknown {service!r}; known: {', '.join(names)}")
    failed_at, letter_id = _from_cursor(cursor) if cursor is not None else ("", "")
    message = pb.ListDeadLettersRequest(
        event_type=type or "",
        status=status or "",
        limit=limit + 1,  # one more than shown: whether another page follows
        before_failed_at=failed_at,
        before_id=letter_id,
    )
    asked = [service] if service is not None else names
    replies = await asyncio.gather(*(_ask(upstream, n, "ListDeadLetters", message) for n in asked))
    # Each service's page is newest first past the cursor; merged, the first `limit` are the
    # newest of all, and any letter past them is in some service's page of limit + 1.
    merged = sorted((x for r in replies for x in r.letters), key=_order, reverse=True)
    shown = merged[:limit]
    more = len(merged) > limit
    return DeadLetterPage(
        items=[_summary(x) for x in shown], nextCursor=_cursor(shown[-1]) if more else None
    )


def _owner(upstream: Gateway, letter_id: str) -> tuple[str, str]:
    service, own_id = parse_id(letter_id)
    if service is None or service not in _services(upstream):
        raise Problem(404, f"no dead letter {letter_id!r}")
    return service, own_id


async def _on_letter(upstream: Gateway, letter_id: str, method: str, **fields: str) -> Any:
    """``method`` of the Operations API of the service that holds the letter; its answer."""
    service, own_id = _owner(upstream, letter_id)
    request = pb.DiscardDeadLetterRequest if "reason" in fields else pb.DeadLetterRequest
    return _detail(await _ask(upstream, service, method, request(id=own_id, **fields)))


@router.get("/dead-letters/{id}", summary="One dead letter, with its event")
async def get_dead_letter(
    id: LetterId, caller: AdminCaller, upstream: Upstream
) -> DeadLetterDetail:
    detail: DeadLetterDetail = await _on_letter(upstream, id, "GetDeadLetter")
    return detail


@router.post(
    "/dead-letters/{id}/redrive",
    summary="Hand an open dead letter to its service again, now",
    description="Handled through the service's inbox (an event it has handled since is skipped). "
    "The answer is the letter afterwards: `redriven`, or still `open` with the new error and "
    "one more attempt. 422 for a letter that is not open.",
)
async def redrive_dead_letter(
    id: LetterId, caller: AdminCaller, upstream: Upstream
) -> DeadLetterDetail:
    detail: DeadLetterDetail = await _on_letter(upstream, id, "RedriveDeadLetter")
    return detail


@router.post(
    "/dead-letters/{id}/discard",
    summary="Give up on an open dead letter, saying why",
    description="The letter is kept and listed as `discarded` with the reason, never deleted. "
    "422 for a letter that is not open.",
)
async def discard_dead_letter(
    id: LetterId, body: Discard, caller: AdminCaller, upstream: Upstream
) -> DeadLetterDetail:
    detail: DeadLetterDetail = await _on_letter(
        upstream, id, "DiscardDeadLetter", reason=body.reason
    )
    return detail


@router.get("/system", summary="Every service's readiness, outbox backlog and dead letters")
async def system_health(caller: AdminCaller, upstream: Upstream) -> SystemHealth:
    async def health(name: str) -> ServiceHealth:
        try:
            reply = await _ask(upstream, name, "GetStatus", pb.GetStatusRequest())
        except Problem as problem:
            return _not_ready(name, problem.detail or "not reachable")
        if not reply.ready:
            return _not_ready(name, reply.not_ready_reason)
        return ServiceHealth(
            name=name,
            ready=True,
            reason=None,
            outboxBacklog=reply.outbox_backlog,
            oldestUnsentAgeSeconds=round(reply.oldest_unsent_age_seconds, 3),
            deadLetters=reply.open_dead_letters,
        )

    names = _services(upstream)
    return SystemHealth(services=list(await asyncio.gather(*(health(n) for n in names))))


def _not_ready(name: str, reason: str) -> ServiceHealth:
    return ServiceHealth(
        name=name,
        ready=False,
        reason=reason,
        outboxBacklog=None,
        oldestUnsentAgeSeconds=None,
        deadLetters=None,
    )
