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


async def consistency(base_url: str, users: int, stock: int) -> dict[str, Any]:
    """The WDM benchmark's consistency test: one item with ``stock`` units at 1, ``users``
    users with 1 credit each, an order of that item for each, every checkout at once; then,
    right after the last checkout answers, a first reading of every credit and of the stock.
    Consistent: as many checkouts paid as credits spent and as units sold."""
    async with Client(base_url, timeout=120, connections=min(users, 200) + 5) as http:
        for path in (f"/payment/batch_init/{users}/1", f"/stock/batch_init/1/{stock}/1"):
            answer = await http.post(path, timeout=300)
            if not answer.is_success:
                raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:200]}")

        async def order_of(user: int) -> str:
            created = await http.post(f"/orders/create/{user}")
            order_id = str(created.json()["order_id"])
            added = await http.post(f"/orders/addItem/{order_id}/0/1")
            if not added.is_success:
                raise RuntimeError(f"addItem: {added.status_code} {added.text[:200]}")
            return order_id

        orders = await asyncio.gather(*(order_of(u) for u in range(users)))
        outcomes: Counter[str] = Counter()

        async def checkout(order_id: str) -> None:
            try:
                answer = await http.post(f"/orders/checkout/{order_id}")
            except FAILURES as exc:
                outcomes[error_kind("POST orders/checkout", exc)] += 1
                return
            code = answer.status_code
            outcomes["paid" if code < 300 else "refused" if code < 500 else f"HTTP {code}"] += 1

        started = time.perf_counter()
        await asyncio.gather(*(checkout(o) for o in orders))
        answered = time.perf_counter() - started
        credits = await asyncio.gather(*(http.get(f"/payment/find_user/{u}") for u in range(users)))
        left = (await http.get("/stock/find/0")).json()["stock"]
    spent = sum(1 - int(c.json()["credit"]) for c in credits)
    paid = outcomes["paid"]
    return {
        "users": users,
        "stock": stock,
        "outcomes": dict(outcomes),
        "checkoutSeconds": answered,
        "creditsSpent": spent,
        "stockSold": stock - int(left),
        "consistent": paid == spent == stock - int(left),
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
    task = progress.add_task(f"WDM consistency on {targets[0]}", total=None)
    try:
        checked = await consistency(targets[0], config.wdm_users, max(1, config.wdm_users // 10))
    except (*FAILURES, RuntimeError, KeyError, ValueError) as exc:
        checked = {"failed": f"{type(exc).__name__}: {exc}"}
    progress.update(task, total=1, completed=1)
    progress.stop_task(task)
    return {"targets": found, "consistency": checked}
