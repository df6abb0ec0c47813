"""webhooks' tables (created by migrations/webhooks_0001_initial.py)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()
When = DateTime(timezone=True)
Id = String(200)

# An outside endpoint and what it asked for. The circuit breaker's state lives here too:
# ``consecutive_failures`` counts the endpoint's failed attempts since its last success, and
# ``paused_until`` (set once they reach the threshold) keeps every delivery to it waiting.
subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("url", Text, nullable=False),
    Column("event_types", Text, nullable=False),  # JSON list; ["*"] = every type
    Column("subject", Id),  # only events about this subject; NULL = any
    Column("active", Boolean, nullable=False),
    Column("description", Text, nullable=False),
    Column("secret", String(100), nullable=False),
    Column("previous_secret", String(100)),
    Column("previous_secret_expires_at", When),
    Column("consecutive_failures", Integer, nullable=False),
    Column("failing_since", When),
    Column("paused_until", When),
    Column("created_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
)

# One event for one subscription. Its id is the ``webhook-id`` of every attempt (and of a
# redrive). ``lease_until``/``lease_owner``: the process sending it now.
deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True),
    Column("subscription_id", Id, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("subject", Id),
    Column("event_time", When, nullable=False),
    Column("body", Text, nullable=False),  # the structured CloudEvent, the bytes POSTed
    Column("status", String(16), nullable=False),
    Column("attempt_count", Integer, nullable=False),  # since it was made or last redriven
    Column("next_attempt_at", When, nullable=False),
    Column("lease_until", When),
    Column("lease_owner", String(64)),
    Column("last_error", Text),
    Column("created_at", When, nullable=False),
    Column("delivered_at", When),
    UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
)
Index(
    "ix_webhook_deliveries_due",
    deliveries.c.subscription_id,
    deliveries.c.status,
    deliveries.c.next_attempt_at,
)
Index("ix_webhook_deliveries_done", deliveries.c.status, deliveries.c.delivered_at)
Index(
    "ix_webhook_deliveries_subject",
    deliveries.c.subscription_id,
    deliveries.c.subject,
    deliveries.c.status,
    deliveries.c.event_time,
)

attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", Id, primary_key=True),
    Column("delivery_id", Id, nullable=False),
    Column("at", When, nullable=False),
    Column("status_code", Integer),  # NULL: no answer (see error)
    Column("latency_ms", Integer, nullable=False),
    Column("error", Text),
    Column("response_excerpt", Text),
)
Index("ix_webhook_attempts_delivery", attempts.c.delivery_id, attempts.c.at)
