"""Identity's tables (created by migrations/identity_0001_initial.py)."""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Index, Integer, MetaData, String, Table

metadata = MetaData()
When = DateTime(timezone=True)

users = Table(
    "users",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("roles", String(200), nullable=False),  # comma-separated, sorted
    Column("created_at", When, nullable=False),
    Column("updated_at", When, nullable=False),
)

# Consecutive failed logins per email, known or not (so throttling reveals no accounts), and
# address: ``email`` holds ``domain.throttle_key`` (the email itself when no address is known).
login_failures = Table(
    "login_failures",
    metadata,
    Column("email", String(254), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failed_at", When, nullable=False),
    Column("locked_until", When),
)

# Refresh tokens, by SHA-256 of the token (they are random, so a plain hash is enough).
# A family is one login and every token rotated from it.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("family_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("created_at", When, nullable=False),
    Column("expires_at", When, nullable=False),
    Column("spent_at", When),
    Column("revoked_at", When),
)
Index("ix_refresh_tokens_family", refresh_tokens.c.family_id)
Index("ix_refresh_tokens_user", refresh_tokens.c.user_id)
