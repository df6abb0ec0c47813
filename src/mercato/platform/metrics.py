"""The platform's own Prometheus counters: what an order costs in events, deliveries and
database transactions. Every process serves them at ``/metrics``; the bench reads
them before and after a run."""

from __future__ import annotations

from prometheus_client import Counter

from mercato.platform.storage.sql import Database

EVENTS_PUBLISHED = Counter(
    "mercato_events_published",
    "Events the outbox relay handed to the broker and the broker confirmed.",
    ["service"],
)
DELIVERIES = Counter(
    "mercato_deliveries",
    "Messages the broker delivered to a service's consumer (duplicates included).",
    ["service"],
)
TRANSACTIONS = Counter(
    "mercato_db_transactions",
    "Database transactions committed (handlers, gRPC calls, the relay's bookkeeping).",
    ["service"],
)


def count_commits(db: Database, service: str) -> None:
    """Count every commit on ``db`` as one of ``service``'s transactions."""
    db.on_commit.append(TRANSACTIONS.labels(service).inc)
