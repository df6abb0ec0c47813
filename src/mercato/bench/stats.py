"""The pure arithmetic of the bench: percentiles, rates per second, and the ceiling an order's
cost puts on throughput given the raw limits measured beside it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CEILING_FORMULA = (
    "broker: t1 = s per message published+consumed on one queue, t3 = the same fanned out to "
    "three queues → per delivery d = (t3 − t1)/2, per publish p = t1 − d (each the median "
    "over rounds of raw trials); database: x = 1/(transactions/s, the median over rounds). "
    "An order costing E events, D deliveries and T transactions needs "
    "E·p + D·d + T·x seconds of the shared machine, so ceiling = 1/(E·p + D·d + T·x) orders/s "
    "(the broker and the database share the same cores, so their costs add up)."
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0–100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max and the count of ``values`` (seconds in, milliseconds out)."""
    ms = [v * 1000 for v in values]
    return {
        "count": len(ms),
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else None,
    }


# A checkout's p99 beyond this many times its p50 is a tail worth finding (a stall: a batch
# held behind a long one, a relay waiting, the event loop blocked), whatever the p50 is.
TAIL_BOUND = 3.0


def tail(summary: dict[str, float | None]) -> str:
    """p99 ÷ p50 of a ``summary``, marked when it is over ``TAIL_BOUND`` (— without data)."""
    p50, p99 = summary.get("p50"), summary.get("p99")
    if not p50 or p99 is None:
        return "—"
    ratio = p99 / p50
    return f"{ratio:.1f}" + (f" (over {TAIL_BOUND:g})" if ratio > TAIL_BOUND else "")


def per_second(times: Iterable[float], start: float, seconds: int) -> list[int]:
    """How many of ``times`` (seconds since the epoch) fall in each second after ``start``."""
    buckets = [0] * max(seconds, 0)
    for t in times:
        i = int(t - start)
        if 0 <= i < len(buckets):
            buckets[i] += 1
    return buckets


@dataclass(frozen=True)
class BrokerCost:
    """Seconds per publish and per delivery, from the one-queue and three-queue raw runs."""

    publish: float
    delivery: float

    @classmethod
    def from_rates(cls, one_queue: float, three_queues: float) -> BrokerCost:
        """``one_queue``/``three_queues``: messages published (and all consumed) per second."""
        if one_queue <= 0 or three_queues <= 0:
            raise ValueError("raw broker rates must be positive")
        t1, t3 = 1 / one_queue, 1 / three_queues
        # Two more deliveries per message cost t3 − t1; noise can make that negative.
        delivery = max((t3 - t1) / 2, 0.0)
        return cls(publish=max(t1 - delivery, 0.0), delivery=delivery)


def ceiling(
    events: float, deliveries: float, transactions: float, broker: BrokerCost | None, tps: float
) -> float | None:
    """Orders/s at most, for an order of this cost (see CEILING_FORMULA); ``broker`` None = an
    in-process bus, whose cost is the handlers' own (counted in the transactions)."""
    if tps <= 0:
        return None
    seconds = transactions / tps
    if broker is not None:
        seconds += events * broker.publish + deliveries * broker.delivery
    return 1 / seconds if seconds > 0 else None
