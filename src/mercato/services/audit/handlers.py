"""audit's one handler: append every event of the catalog, once.

Ordering: none needed; the log is read in time order, whatever order events came in.
Idempotent: the inbox drops what this consumer has seen, and the event id is unique in the log
(two replicas handling the same event at once: the second's inbox claim waits for the first's
transaction and finds the row).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from mercato.platform.envelope import Envelope
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.audit import store


async def record_events(batch: Sequence[Envelope], uow: UnitOfWork) -> None:
    """The batch's new events, whole (their structured CloudEvents), in one append."""
    await store.append(uow.conn, batch, datetime.now(UTC))
