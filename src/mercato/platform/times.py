"""Times on the wire (gRPC replies, the API, CloudEvents' ``time``): RFC 3339 in UTC, written
with "Z", the same way by every service."""

from __future__ import annotations

from datetime import UTC, datetime


def rfc3339(moment: datetime) -> str:
    """An aware ``moment`` in UTC, e.g. ``2026-12-03T17:04:42.054961Z``."""
    if moment.tzinfo is None:
        raise ValueError("a time without a zone has no place on the wire")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
