"""The consuming side: handler declarations and the inbox consumer every service runs.

A batch of messages is handled in one transaction, with one inbox row per event: the effects
and "event X processed by consumer C" commit together, so a redelivered event finds its row
and is acknowledged without effect. If a batch fails, its messages are handled one by one, so
one bad message cannot hold back the others; a message that keeps failing is retried with
backoff and then kept as a dead letter with its error; a message that cannot even be decoded,
or whose type this consumer has no handler for, is a dead letter at once. A dead letter keeps
the body's bytes as they came and its text fields escaped where a database would refuse them
(a NUL), so storing it cannot fail on what the message holds; only a database that cannot be
reached keeps the message on the broker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from time import perf_counter
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite

from mercato.contracts.events import Payload
from mercato.platform import tracing
from mercato.platform.bus.port import (
    ACK,
    ALL_EVENTS,
    ROUTE_BY,
    RawMessage,
    Retry,
    Verdict,
    pattern_for,
)
from mercato.platform.envelope import Envelope, EnvelopeError
from mercato.platform.ids import new_id
from mercato.platform.metrics import DELIVERIES, handler_outcomes, handler_seconds
from mercato.platform.storage.sql import Database, connection_lost
from mercato.platform.storage.tables import dead_letters, inbox
from mercato.platform.unit_of_work import Committed, UnitOfWork, trace_id_of, transaction

# Reads, in one statement, what the handlers of a batch's new events will each read, and keeps
# it for them in the unit of work (the order service: the batch's orders, locked): one round
# trip for the batch instead of one per event.
Prefetch = Callable[[UnitOfWork, Sequence[Payload]], Awaitable[None]]

log = structlog.get_logger(__name__)

HandlerFn = Callable[[Any, UnitOfWork], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class On:
    """``on(ProductCreated, create_stock_item)``: a handler for one event type.

    ``route`` narrows it to one value of the type's route field (OrderStatusChanged's status),
    so the service's queue is bound to that value only.
    """

    model: type[Payload]
    handler: HandlerFn
    route: str | None = None

    @property
    def event_type(self) -> str:
        return self.model.__name__

    @property
    def pattern(self) -> str:
        return pattern_for(self.event_type, self.route)


def on(model: type[Payload], handler: HandlerFn, route: str | None = None) -> On:
    return On(model, handler, route)


EveryFn = Callable[[Sequence[Envelope], UnitOfWork], Awaitable[None]]
# Read once per batch, before its transaction: which events an ``every`` handler wants now.
Interest = Callable[[Database], Awaitable[Callable[[Envelope], bool]]]


@dataclass(frozen=True, slots=True)
class OnEvery:
    """``every(append_events, catalog)``: one handler for every event of every type, called
    once per batch with the batch's new envelopes, in the batch's transaction (the audit log:
    one multi-row append per batch). Its queue is bound with one wildcard.

    With a ``catalog`` (type → model), an event of a type not in it, or whose payload fails
    its model, is a dead letter, as it is for a handler of that type; without one, every
    well-formed CloudEvent is taken.

    With an ``interest`` (webhooks: the active subscriptions), the events of a batch that no
    handler wants at that moment are acknowledged before any transaction: no inbox row, no
    handler call (outcome ``unwanted``). A redelivered one is asked about again."""

    handler: EveryFn
    catalog: Mapping[str, type[Payload]] | None = None
    interest: Interest | None = None
    pattern: str = ALL_EVENTS


def every(
    handler: EveryFn,
    catalog: Mapping[str, type[Payload]] | None = None,
    *,
    interest: Interest | None = None,
) -> OnEvery:
    return OnEvery(handler, catalog, interest)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 30.0

    def delay(self, attempt: int) -> float:
        return float(min(self.base_delay * 2 ** (attempt - 1), self.max_delay))


class PoisonMessage(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Decoded:
    message: RawMessage
    envelope: Envelope
    payload: Payload | None  # None: a type only an ``every`` handler takes
    handlers: tuple[On, ...]


class InboxConsumer:
    """The ``Processor`` a service hands to the bus."""

    def __init__(
        self,
        name: str,
        db: Database,
        handlers: Sequence[On | OnEvery],
        *,
        policy: RetryPolicy | None = None,
        on_events: Committed | None = None,
        prefetch: Prefetch | None = None,
        system: str = "mercato",
    ):
        self.name = name
        self.system = system  # the bus's messaging.system, for the spans
        self.prefetch = prefetch
        self.db = db
        self.policy = policy or RetryPolicy()
        self.on_events = on_events
        self._in_hand: set[asyncio.Task[Any]] = set()  # the tasks handling a batch
        self._abandoned: set[asyncio.Task[Any]] = set()  # of those, the ones cancelled
        self._by_type: dict[str, list[On]] = {}
        self._every = [h for h in handlers if isinstance(h, OnEvery)]
        for h in handlers:
            if isinstance(h, On):
                self._by_type.setdefault(h.event_type, []).append(h)
        self.patterns = tuple(sorted({h.pattern for h in handlers}))
        dialect = postgresql if db.dialect.name == "postgresql" else sqlite
        self._claim = dialect.insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)

    async def __call__(self, batch: Sequence[RawMessage]) -> list[Verdict]:
        # The task handling the batch, for ``abandon`` (≈ 1 µs a batch; a cancel scope per
        # batch, asyncio.timeout(None), cost ≈ 6).
        task = asyncio.current_task()
        assert task is not None
        self._in_hand.add(task)
        try:
            return await self._process(batch)
        except asyncio.CancelledError:
            if task not in self._abandoned:
                raise
            task.uncancel()  # the bus's worker goes on: it hands the messages back
            log.warning(
                "batch cancelled at shutdown; its messages go back to the broker",
                consumer=self.name,
                messages=len(batch),
            )
            return [Retry(0.0)] * len(batch)
        finally:
            self._in_hand.discard(task)
            self._abandoned.discard(task)

    def abandon(self) -> int:
        """Cancel the batches in hand (a shutdown whose handlers did not finish in time):
        their transactions roll back and their messages go back to the broker, which
        redelivers them. Returns how many batches were in hand."""
        for task in self._in_hand - self._abandoned:
            self._abandoned.add(task)
            task.cancel()
        return len(self._in_hand)

    async def _process(self, batch: Sequence[RawMessage]) -> list[Verdict]:
        DELIVERIES.labels(self.name).inc(len(batch))
        verdicts: list[Verdict] = [ACK] * len(batch)
        good: list[tuple[int, _Decoded]] = []
        for i, message in enumerate(batch):
            if message.exhausted:
                verdicts[i] = await self._dead_letter(
                    message, "the broker's delivery limit was reached (the consumer crashed?)", None
                )
                continue
            try:
                decoded = self._decode(message)
            except PoisonMessage as exc:
                verdicts[i] = await self._dead_letter(message, str(exc), None)
                continue
            good.append((i, decoded))
        if self._every and all(h.interest is not None for h in self._every):
            good = await self._wanted(good)
        if len(good) > 1:
            try:
                await self._handle([d for _, d in good])
                return verdicts
            except Exception as exc:
                log.info("batch failed; handling one by one", consumer=self.name, error=str(exc))
        for i, decoded in good:
            try:
                await self._handle([decoded])
            except Exception as exc:
                verdicts[i] = await self._failed(decoded, exc)
        return verdicts

    async def _wanted(self, good: list[tuple[int, _Decoded]]) -> list[tuple[int, _Decoded]]:
        """Of ``good``, the events some handler wants (the others are acknowledged as they
        are). If the ``every`` handlers cannot say (their database is down), all of them: the
        transaction then fails and retries them as usual."""
        try:
            wants = [await h.interest(self.db) for h in self._every if h.interest is not None]
        except Exception as exc:
            log.info("cannot tell which events are wanted", consumer=self.name, error=str(exc))
            return good
        kept = []
        for i, decoded in good:
            if decoded.handlers or any(w(decoded.envelope) for w in wants):
                kept.append((i, decoded))
            else:
                handler_outcomes(self.name, decoded.envelope.type, "unwanted").inc()
        return kept

    def _decode(self, message: RawMessage) -> _Decoded:
        try:
            envelope = Envelope.from_binary(message.headers, message.body, message.prefix)
        except EnvelopeError as exc:
            raise PoisonMessage(f"malformed event: {exc}") from exc
        handlers = self._by_type.get(envelope.type)
        if not handlers and self._every:
            self._check(envelope)
            return _Decoded(message, envelope, None, ())
        if not handlers:
            # The queue is bound to the handled types only: this came from a publisher newer
            # than this consumer, or by mistake, and an operator must see it.
            raise PoisonMessage(f"unknown event type {envelope.type!r}: {self.name} has no handler")
        try:
            payload = handlers[0].model.model_validate(envelope.data)
        except ValidationError as exc:
            raise PoisonMessage(f"invalid {envelope.type} payload: {exc}") from exc
        matching = tuple(
            h for h in handlers if h.route is None or h.route == _route_value(envelope, h)
        )
        return _Decoded(message, envelope, payload, matching)

    def _check(self, envelope: Envelope) -> None:
        """An event for ``every`` handlers only: held to each one's catalog, if it has one."""
        for handler in self._every:
            if handler.catalog is None:
                continue
            model = handler.catalog.get(envelope.type)
            if model is None:
                raise PoisonMessage(
                    f"unknown event type {envelope.type!r}: not in {self.name}'s catalog"
                )
            try:
                model.model_validate(envelope.data)
            except ValidationError as exc:
                raise PoisonMessage(f"invalid {envelope.type} payload: {exc}") from exc

    async def _handle(self, items: Sequence[_Decoded]) -> None:
        """Handle ``items`` in one transaction; once it has committed, count what each
        handler took (``mercato_handler_duration_seconds``)."""
        otel = tracing.otel
        if otel is None:
            handled = await self._transaction(items, None)
        else:
            spans = otel.Processing(
                self.name,
                self.system,
                [(i.envelope, i.message.topic, i.message.attempt) for i in items],
            )
            try:
                handled = await self._transaction(items, spans)
            except BaseException as error:
                spans.end(error)
                raise
            spans.end(None)
        for event_type, seconds in handled:
            if seconds is None:
                handler_outcomes(self.name, event_type, "duplicate").inc()
            else:
                handler_seconds(self.name, event_type).observe(seconds)
                handler_outcomes(self.name, event_type, "handled").inc()

    async def _transaction(
        self, items: Sequence[_Decoded], spans: Any
    ) -> list[tuple[str, float | None]]:
        """Handle ``items`` in one transaction (``spans``: their ``process`` spans, or None);
        for each, its type and the seconds its handlers took (None: a duplicate, skipped)."""
        handled: list[tuple[str, float | None]] = []
        async with transaction(self.db, self.name, on_events=self.on_events) as uow:
            now = datetime.now(UTC)
            # One statement records the whole batch; it returns the events not seen before.
            claimed = await uow.conn.execute(
                self._claim,
                [
                    {
                        "consumer": self.name,
                        "event_id": item.envelope.id,
                        "event_type": item.envelope.type,
                        "processed_at": now,
                    }
                    for item in items
                ],
            )
            fresh = {row.event_id for row in claimed}
            if self.prefetch is not None and fresh:
                new = {i.envelope.id: i.payload for i in items if i.envelope.id in fresh}
                await self.prefetch(uow, [p for p in new.values() if p is not None])
            share = 0.0  # of the ``every`` handlers' time, each event's
            if self._every and fresh:
                new_envelopes = {i.envelope.id: i.envelope for i in items if i.envelope.id in fresh}
                started = perf_counter()
                for every_handler in self._every:
                    await every_handler.handler(list(new_envelopes.values()), uow)
                share = (perf_counter() - started) / len(new_envelopes)
            for index, item in enumerate(items):
                env = item.envelope
                if env.id not in fresh:  # handled before, or earlier in this batch
                    log.debug("duplicate event skipped", consumer=self.name, event_id=env.id)
                    if spans is not None:
                        spans.skipped(index)
                    handled.append((env.type, None))
                    continue
                fresh.discard(env.id)
                if not item.handlers:  # taken by the ``every`` handlers above, together
                    handled.append((env.type, share))
                    continue
                uow.cause = env
                # bind/reset rather than bound_contextvars, which copies the whole context.
                tokens = structlog.contextvars.bind_contextvars(
                    event_id=env.id,
                    event_type=env.type,
                    correlation_id=env.correlationid,
                    trace_id=trace_id_of(env.traceparent),
                )
                started = perf_counter()
                try:
                    if spans is None:
                        for h in item.handlers:
                            await h.handler(item.payload, uow)
                    else:
                        with spans.item(index):
                            for h in item.handlers:
                                await h.handler(item.payload, uow)
                finally:
                    structlog.contextvars.reset_contextvars(**tokens)
                handled.append((env.type, perf_counter() - started))
        return handled

    async def _failed(self, decoded: _Decoded, exc: Exception) -> Verdict:
        message = decoded.message
        error = "".join(traceback.format_exception_only(exc)).strip()
        if message.attempt < self.policy.max_attempts:
            log.warning(
                "handler failed; will retry",
                consumer=self.name,
                event_id=decoded.envelope.id,
                attempt=message.attempt,
                error=error,
            )
            handler_outcomes(self.name, decoded.envelope.type, "retried").inc()
            return Retry(self.policy.delay(message.attempt))
        return await self._dead_letter(message, error, decoded.envelope)

    async def _dead_letter(
        self, message: RawMessage, error: str, envelope: Envelope | None
    ) -> Verdict:
        event_id = envelope.id if envelope else _header(message, "id")
        event_type = envelope.type if envelope else _header(message, "type")
        now = datetime.now(UTC)
        letter: dict[str, Any] = {
            "id": new_id(),
            "consumer": self.name,
            "event_id": _label(event_id),
            "event_type": _label(event_type, 100),
            "headers": json.dumps({k: _text(v) for k, v in message.headers.items()}),
            "body": bytes(message.body),
            "error": _storable(error),
            "attempts": message.attempt,
            "status": "dead",
            "failed_at": now,
            "first_failed_at": now,
        }
        # A type this consumer knows, or "unknown": a label never takes a message's free text.
        known = event_type if event_type in self._by_type else "unknown"
        handler_outcomes(self.name, known, "dead_lettered").inc()
        log.error(
            "dead-lettered",
            consumer=self.name,
            event_id=letter["event_id"],
            attempts=message.attempt,
            error=error,
        )
        try:
            await self._store(letter)
            return ACK
        except Exception as exc:
            if connection_lost(exc):  # the database is down: keep the message on the broker
                log.error("could not store dead letter", consumer=self.name, error=str(exc))
                return Retry(self.policy.delay(message.attempt))
            refused = exc
        # The database refused the letter itself, for a reason not foreseen above: store it
        # with every text field ASCII-escaped, which any database takes; a message never
        # loops on its own dead letter.
        log.error("dead letter refused; storing it escaped", consumer=self.name, error=str(refused))
        letter.update(
            event_id=_label(_ascii(event_id)),
            event_type=_label(_ascii(event_type), 100),
            error=ascii(f"{error}\n(stored escaped, the database refused it: {refused})"),
        )
        try:
            await self._store(letter)
            return ACK
        except Exception as exc:
            if connection_lost(exc):
                return Retry(self.policy.delay(message.attempt))
            # The last place left that shows it: the log, with the whole message.
            log.critical(
                "dead letter could not be stored; the message is acknowledged and kept only "
                "in this log",
                consumer=self.name,
                error=error,
                store_error=str(exc),
                headers=letter["headers"],
                body=base64.b64encode(message.body).decode(),
            )
            return ACK

    async def _store(self, letter: dict[str, Any]) -> None:
        async with self.db.begin() as conn:
            await conn.execute(dead_letters.insert(), letter)

    async def redrive(self, row: Any) -> str | None:
        """Handle a stored dead letter again; None on success, else the new error."""
        message = RawMessage(
            topic="",
            headers=json.loads(row.headers),
            body=bytes(row.body),
            prefix=prefix_of(json.loads(row.headers)),
        )
        try:
            await self._handle([self._decode(message)])
        except Exception as exc:
            return "".join(traceback.format_exception_only(exc)).strip()
        return None


def _route_value(envelope: Envelope, handler: On) -> str | None:
    field = ROUTE_BY.get(handler.event_type)
    value = envelope.data.get(field) if field else None
    return str(value) if value is not None else None


def _header(message: RawMessage, name: str) -> str | None:
    value = message.headers.get(message.prefix + name)
    return _text(value) if value is not None else None


def _text(value: Any) -> str:
    return (
        value.decode("utf-8", errors="backslashreplace") if isinstance(value, bytes) else str(value)
    )


def _storable(text: str) -> str:
    """``text`` as any database's text column takes it: PostgreSQL refuses NUL (kept as the
    escape ``\\x00``) and a lone surrogate cannot be encoded."""
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()


def _label(text: str | None, limit: int = 64) -> str | None:
    """An id or a type from the message, cut to its column's length."""
    return None if text is None else _storable(text)[:limit]


def _ascii(text: str | None) -> str | None:
    return None if text is None else ascii(text)[1:-1]


def prefix_of(headers: Mapping[str, Any]) -> str:
    """The CloudEvents prefix (``ce-``, ``cloudEvents:``) of headers as they were stored."""
    for key in headers:
        if key.endswith("specversion"):
            return key[: -len("specversion")]
    return "ce-"
