"""The WDM benchmark's load (its Locust stress test, in asyncio): bulk set-up by the
``batch_init`` routes, then every client loops create order → addItem ×1–3 → checkout → find,
against any base URL that serves that API, so another system can be measured in the same run."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.progress import Progress

from mercato.bench import stats
from mercato.bench.client import FAILURES, Client, Response
from mercato.bench.hammer import error_kind

if TYPE_CHECKING:
    from mercato.bench.run import Config

STARTING_MONEY, STARTING_STOCK, ITEM_PRICE = 1_000_000, 1_000_000, 1


async def batch_init(http: Client, users: int, items: int) -> None:
    for path in (
        f"/payment/batch_init/{users}/{STARTING_MONEY}",
        f"/stock/batch_init/{items}/{STARTING_STOCK}/{ITEM_PRICE}",
        f"/orders/batch_init/{users}/{items}/{users}/{ITEM_PRICE}",
    ):
        response = await http.post(path, timeout=300)
        if response.status_code == 404:
            raise RuntimeError(
                f"POST {path}: 404, the target does not serve the WDM API"
                " (a Mercato serves it with MERCATO_WDM_API=1 and an admin account)"
            )
        if not response.is_success:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:200]}")


async def stress(
    base_url: str, clients: int, seconds: float, users: int, items: int
) -> dict[str, Any]:
    """Checkouts/s (answered 2xx or 4xx), their latency, and errors (5xx, transport)."""
    async with Client(base_url, timeout=60, connections=clients + 5) as http:
        await batch_init(http, users, items)
        errors: Counter[str] = Counter()
        outcomes: Counter[str] = Counter()
        latencies: list[float] = []
        stop_at = time.monotonic() + seconds

        async def post(label: str, path: str) -> Response | None:
            try:
                response = await http.post(path)
            except FAILURES as exc:
                errors[error_kind(label, exc)] += 1
                return None
            if response.status_code >= 500:
                errors[error_kind(label, response)] += 1
                return None
            return response

        async def client(n: int) -> None:
            rng = random.Random(n)
            while time.monotonic() < stop_at:
                created = await post("POST orders/create", f"/orders/create/{rng.randrange(users)}")
                if created is None or not created.is_success:
                    continue
                order_id = created.json()["order_id"]
                for _ in range(rng.randint(1, 3)):
                    await post(
                        "POST orders/addItem",
                        f"/orders/addItem/{order_id}/{rng.randrange(items)}/1",
                    )
                sent = time.perf_counter()
                checkout = await post("POST orders/checkout", f"/orders/checkout/{order_id}")
                if checkout is None:
                    continue
                latencies.append(time.perf_counter() - sent)
                outcomes["paid" if checkout.is_success else "refused"] += 1
                try:
                    await http.get(f"/orders/find/{order_id}")
                except FAILURES as exc:
                    errors[error_kind("GET orders/find", exc)] += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "url": base_url,
        "checkouts": sum(outcomes.values()),
        "checkoutsPerSecond": sum(outcomes.values()) / elapsed,
        "outcomes": dict(outcomes),
        "latencyMs": stats.summary(latencies),
        "errors": dict(errors),
    }


async def reachable(url: str) -> bool:
    """Whether anything answers HTTP at ``url`` (checked before a long run starts)."""
    try:
        async with Client(timeout=5) as http:
            await http.get(url)
    except FAILURES:
        return False
    return True


async def compare(targets: list[str], config: Config, progress: Progress) -> dict[str, Any]:
    """The same WDM load on each target in turn; rates as ratios to the first (ours)."""
    found = []
    for url in targets:
        task = progress.add_task(f"WDM load on {url}", total=None)
        try:
            found.append(
                await stress(
                    url, config.shoppers, config.wdm_seconds, config.wdm_users, config.wdm_items
                )
            )
        except (*FAILURES, RuntimeError, KeyError, ValueError) as exc:
            # One target failing (down, or not serving the WDM API) spoils only its own row.
            found.append(
                {"url": url, "failed": f"{type(exc).__name__}: {exc}", "checkoutsPerSecond": None}
            )
        progress.update(task, total=1, completed=1)
        progress.stop_task(task)
    first = found[0]["checkoutsPerSecond"]
    for target in found:
        rate = target["checkoutsPerSecond"]
        target["ratioToFirst"] = rate / first if first and rate is not None else None
    return {"targets": found}
