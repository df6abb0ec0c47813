"""The cost counters every Mercato process serves at ``/metrics`` (platform/metrics.py), read
before and after a scenario: their difference divided by the orders placed is what an order
costs in events published, broker deliveries and database transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from prometheus_client.parser import text_string_to_metric_families

from mercato.bench.client import Client

COUNTERS = {
    "events": "mercato_events_published",
    "deliveries": "mercato_deliveries",
    "transactions": "mercato_db_transactions",
}
Counts = dict[str, dict[str, float]]  # figure → service → value


def parse(text: str) -> Counts:
    """The cost counters in a Prometheus text exposition, by figure and service."""
    wanted = {family: figure for figure, family in COUNTERS.items()}
    counts: Counts = {figure: {} for figure in COUNTERS}
    for family in text_string_to_metric_families(text):
        figure = wanted.get(family.name)
        if figure is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                service = sample.labels.get("service", "")
                counts[figure][service] = counts[figure].get(service, 0.0) + sample.value
    return counts


def merge(parts: Iterable[Counts]) -> Counts:
    """Several processes' counters added up (replicas of one service included)."""
    total: Counts = {figure: {} for figure in COUNTERS}
    for part in parts:
        for figure, services in part.items():
            for service, value in services.items():
                total[figure][service] = total[figure].get(service, 0.0) + value
    return total


def difference(after: Counts, before: Counts) -> Counts:
    return {
        figure: {s: v - before.get(figure, {}).get(s, 0.0) for s, v in services.items()}
        for figure, services in after.items()
    }


def per_order(delta: Counts, orders: int) -> dict[str, float | None]:
    """Events, deliveries and transactions per order (None without orders)."""
    return {
        figure: (sum(services.values()) / orders if orders else None)
        for figure, services in delta.items()
    }


def by_service(delta: Counts, orders: int) -> dict[str, Mapping[str, float]]:
    """Per-order figures split by service, for the report's detail."""
    return {
        figure: {s: round(v / orders, 2) for s, v in sorted(services.items()) if orders}
        for figure, services in delta.items()
    }


async def scrape(urls: Iterable[str]) -> Counts:
    """Every process's counters, summed."""
    async with Client(timeout=10) as http:

        async def one(url: str) -> Counts:
            response = await http.get(url)
            if not response.is_success:
                raise RuntimeError(f"GET {url}: {response.status_code}")
            return parse(response.text)

        return merge(await asyncio.gather(*(one(u) for u in urls)))


def without_idle(delta: Counts, idle: Mapping[str, float], seconds: float) -> Counts:
    """``delta`` less what the idle system does in ``seconds`` (``idle``: figure → per
    second), taken from its services in proportion and never below zero."""
    net: Counts = {}
    for figure, services in delta.items():
        total = sum(services.values())
        background = min(idle.get(figure, 0.0) * seconds, total)
        share = (total - background) / total if total else 0.0
        net[figure] = {s: v * share for s, v in services.items()}
    return net


async def idle_rates(urls: Iterable[str], seconds: float) -> dict[str, float]:
    """Counters per second of the system doing nothing, over ``seconds``."""
    listed = list(urls)
    before = await scrape(listed)
    await asyncio.sleep(seconds)
    delta = difference(await scrape(listed), before)
    return {figure: sum(s.values()) / seconds for figure, s in delta.items()}
