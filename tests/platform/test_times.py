"""Times on the wire: RFC 3339 in UTC, written with "Z"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from mercato.platform.times import rfc3339


def test_a_utc_time_is_written_with_z() -> None:
    assert rfc3339(datetime(2026, 12, 3, 17, 4, 42, 54961, tzinfo=UTC)) == (
        "2026-12-03T17:04:42.054961Z"
    )
    assert rfc3339(datetime(2026, 12, 3, 17, 4, 42, tzinfo=UTC)) == "2026-12-03T17:04:42Z"


def test_a_time_in_another_zone_is_written_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    assert rfc3339(datetime(2026, 12, 3, 18, 4, 42, 5, tzinfo=paris)) == (
        "2026-12-03T17:04:42.000005Z"
    )
    # A zero offset that is not the UTC object itself.
    assert rfc3339(datetime(2026, 12, 3, 17, 4, 42, tzinfo=timezone(timedelta(0), "Z0"))) == (
        "2026-12-03T17:04:42Z"
    )


def test_a_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="without a zone"):
        rfc3339(datetime(2026, 12, 3, 17, 4, 42))
