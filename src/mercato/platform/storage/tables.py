"""The platform's tables, present in every service's database (created by migrations)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a log.
Seq = BigInteger().with_variant(Integer(), "sqlite")

outbox = Table(
    "outbox",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("aggregate", String(200)),
    Column("event_type", String(100), nullable=False),
    Column("topic", String(300), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
)
Index(
    "ix_outbox_unsent",
    outbox.c.seq,
    postgresql_where=text("sent_at IS NULL"),
    sqlite_where=text("sent_at IS NULL"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("event_type", String(100), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("consumer", String(100), nullable=False),
    Column("event_id", String(64)),
    Column("event_type", String(100)),
    Column("headers", Text, nullable=False),  # JSON, every value a string
    Column("body", LargeBinary, nullable=False),  # as it came off the broker
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False),  # the last failure
    Column("redriven_at", DateTime(timezone=True)),
    Column("first_failed_at", DateTime(timezone=True)),
    Column("discard_reason", Text),
    Column("discarded_at", DateTime(timezone=True)),
)
Index("ix_dead_letters_status", dead_letters.c.status)

# The answer to a request that carried an Idempotency-Key (see mercato.platform.idempotency).
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_idempotency_keys_created_at", idempotency_keys.c.created_at)
