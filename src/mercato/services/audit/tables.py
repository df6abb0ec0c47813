"""audit's tables (made by migrations/audit_0001_initial.py)."""

from __future__ import annotations

import sqlalchemy as sa

from mercato.platform.storage.tables import Seq

metadata = sa.MetaData()
When = sa.DateTime(timezone=True)

# Every event once, as its structured CloudEvent; only appended to (and pruned by retention).
# The attributes a query selects on are columns of their own, each indexed with the time.
events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("seq", Seq, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(300)),
    sa.Column("correlation_id", sa.String(300)),
    sa.Column("causation_id", sa.String(300)),
    sa.Column("time", When, nullable=False),
    sa.Column("recorded_at", When, nullable=False),
    sa.Column("envelope", sa.Text, nullable=False),
)

# `mercato events replay` asks for a replay here; a replica of audit claims it and does it.
replays = sa.Table(
    "audit_replays",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("target", sa.String(100), nullable=False),
    sa.Column("patterns", sa.Text, nullable=False),  # JSON: the target's binding patterns
    sa.Column("filters", sa.Text, nullable=False),  # JSON: type, subject, since, until…
    sa.Column("status", sa.String(16), nullable=False),  # pending, running, done, failed
    sa.Column("matched", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delivered", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Column("requested_at", When, nullable=False),
    sa.Column("finished_at", When),
)
