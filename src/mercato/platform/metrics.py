"""The platform's Prometheus metrics, served by every process at ``/metrics``: what an order
costs in events, deliveries and database transactions (the bench reads them before and after
a run); latency of HTTP requests, gRPC calls and event handlers; each service's outbox
backlog, dead letters, queue depth and readiness; the order saga's steps and cancellations.
docs/operations.md lists them with the alerts built on them."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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


# -- latency and outcomes ------------------------------------------------------------------
# Buckets from a millisecond (an in-process gRPC call) to ten seconds.
_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_SECONDS = Histogram(
    "mercato_http_request_duration_seconds",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
    buckets=_SECONDS,
)
GRPC_SECONDS = Histogram(
    "mercato_grpc_server_duration_seconds",
    "Unary gRPC calls served (over the network or in-process), by method and status code.",
    ["method", "code"],
    buckets=_SECONDS,
)
HANDLER_SECONDS = Histogram(
    "mercato_handler_duration_seconds",
    "What a consumer's handlers took for one event, counted once its transaction committed.",
    ["consumer", "event_type"],
    buckets=_SECONDS,
)
HANDLER_OUTCOMES = Counter(
    "mercato_handler_outcomes",
    "Events a consumer took: handled, duplicate (skipped by the inbox), unwanted (by an "
    "every handler with an interest: webhooks), retried, dead_lettered.",
    ["consumer", "event_type", "outcome"],
)

# -- the state of each service, read when /metrics is scraped (runtime/gauges.py) -------------
OUTBOX_BACKLOG = Gauge(
    "mercato_outbox_backlog", "Outbox rows not yet sent to the broker.", ["service"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "mercato_outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbox row not yet sent (0 when none waits).",
    ["service"],
)
DEAD_LETTERS = Gauge(
    "mercato_dead_letters", "Dead letters kept and not re-driven or discarded.", ["service"]
)
QUEUE_DEPTH = Gauge(
    "mercato_consumer_queue_depth",
    "Messages waiting for the service's consumer, as the broker tells it (where it does).",
    ["service"],
)
SERVICE_READY = Gauge(
    "mercato_service_ready", "1 when the service reaches its database and broker.", ["service"]
)

# -- the order saga (the order service observes them once a change has committed) ------------
SAGA_STEP_SECONDS = Histogram(
    "mercato_saga_step_seconds",
    "Seconds from an order's creation to each step: paid, reserved, delivering, completed.",
    ["step"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
)
ORDERS_CANCELLED = Counter(
    "mercato_orders_cancelled",
    "Orders cancelled, by reason: payment_failed, reservation_failed, delivery_failed, "
    "payment_timeout, reservation_timeout, shipment_timeout, customer.",
    ["reason"],
)


class Kept:
    """A metric's labelled children, kept by their labels: ``labels()`` costs more than the
    observation itself (every label set here comes from a short list: routes, methods,
    consumers, event types, outcomes)."""

    def __init__(self, metric: Any):
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        return child


http_seconds = Kept(HTTP_SECONDS)
grpc_seconds = Kept(GRPC_SECONDS)
handler_seconds = Kept(HANDLER_SECONDS)
handler_outcomes = Kept(HANDLER_OUTCOMES)
