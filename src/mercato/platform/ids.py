"""Identifiers: UUIDv7 (time-ordered), as strings everywhere outside the database."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def _uuid7() -> int:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, then a 12-bit counter seeded at random.

    The counter keeps ids monotonic inside one process even when many are made in the same
    millisecond, so ids sort in creation order (the outbox and audit log rely on that only as a
    tie-breaker; they have their own sequence numbers).
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x7FF
        else:
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        counter = _counter
        rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= counter << 64
    value |= 0b10 << 62
    value |= rand_b
    return value


def new_id() -> str:
    """A UUIDv7 in its canonical text form, written without a ``uuid.UUID`` in between
    (≈ 2.5 µs less per id; an order makes dozens)."""
    text = f"{_uuid7():032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def made_within(value: str, seconds: float, *, skew: float = 5.0) -> bool:
    """Whether ``value`` is a UUIDv7 made in the last ``seconds`` (``skew`` seconds of clock
    difference between machines allowed either way)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError):
        return False
    if parsed.version != 7:
        return False
    age = time.time() - (parsed.int >> 80) / 1000
    return -skew <= age <= seconds + skew
