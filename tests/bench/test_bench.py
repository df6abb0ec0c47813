"""``mercato bench``: the pure arithmetic (percentiles, ceiling, metrics parsing, settlement and
money rules), bad flags, the raw probes at tiny sizes, and one tiny embedded run whose JSON must
hold every figure and whose invariants must hold."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mercato.bench import cpu, raw, scrape, stats, wdm
from mercato.bench.client import Client, Response
from mercato.bench.hammer import error_kind, hammer
from mercato.bench.invariants import money, reserved_units
from mercato.bench.report import markdown, save, show, tell_saved
from mercato.bench.run import Config, _progress, bench, measure_raw
from mercato.bench.shoppers import Placed, arrivals, settled, shop_open
from mercato.cli.main import app
from mercato.services import OPTIONAL

METRICS = """\
# HELP mercato_events_published_total Events the outbox relay handed to the broker.
# TYPE mercato_events_published_total counter
mercato_events_published_total{service="order"} 12.0
mercato_events_published_total{service="payment"} 3.0
# TYPE mercato_deliveries_total counter
mercato_deliveries_total{service="order"} 7.0
# TYPE mercato_db_transactions_total counter
mercato_db_transactions_total{service="inventory"} 5.0
# TYPE other_total counter
other_total 99.0
"""


def test_percentiles_interpolate_between_ranks() -> None:
    assert stats.percentile([], 50) is None
    assert stats.percentile([3.0], 99) == 3.0
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert stats.percentile([4.0, 1.0, 3.0, 2.0], 100) == 4.0
    assert stats.percentile(list(map(float, range(101))), 90) == 90.0
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)
    assert stats.summary([0.1, 0.2]) == {
        "count": 2,
        "p50": pytest.approx(150),
        "p90": pytest.approx(190),
        "p99": pytest.approx(199),
        "max": pytest.approx(200),
    }


def test_the_tail_is_p99_over_p50_marked_past_the_bound() -> None:
    assert stats.tail({"p50": 100.0, "p99": 250.0}) == "2.5"
    assert stats.tail({"p50": 100.0, "p99": 1100.0}) == "11.0 (over 3)"
    assert stats.tail({"p50": None, "p99": None}) == "—"


def test_per_second_buckets_from_the_start() -> None:
    assert stats.per_second([100.2, 100.9, 101.5, 99.0, 104.0], 100.0, 3) == [2, 1, 0]


def test_broker_cost_splits_publish_and_delivery() -> None:
    # 1,000 msgs/s on one queue (1 ms each), 500 fanned out to three (2 ms each): each of the
    # two extra deliveries costs 0.5 ms, so a delivery is 0.5 ms and a publish 0.5 ms.
    cost = stats.BrokerCost.from_rates(1000, 500)
    assert cost.publish == pytest.approx(0.0005) and cost.delivery == pytest.approx(0.0005)
    # Noise that makes the fan-out look free never gives a negative cost.
    assert stats.BrokerCost.from_rates(1000, 1100).delivery == 0
    with pytest.raises(ValueError):
        stats.BrokerCost.from_rates(0, 10)


def test_ceiling_adds_up_the_costs_on_the_shared_machine() -> None:
    broker = stats.BrokerCost(publish=0.0005, delivery=0.0005)
    # 10 events, 25 deliveries (17.5 ms) + 12 transactions at 2,000 tps (6 ms) = 23.5 ms.
    assert stats.ceiling(10, 25, 12, broker, 2000) == pytest.approx(1 / 0.0235)
    assert stats.ceiling(10, 25, 12, None, 2000) == pytest.approx(2000 / 12)
    assert stats.ceiling(1, 1, 1, broker, 0) is None


def test_metrics_are_parsed_merged_and_divided_per_order() -> None:
    parsed = scrape.parse(METRICS)
    assert parsed == {
        "events": {"order": 12.0, "payment": 3.0},
        "deliveries": {"order": 7.0},
        "transactions": {"inventory": 5.0},
    }
    merged = scrape.merge([parsed, parsed])
    assert merged["events"]["order"] == 24.0
    delta = scrape.difference(merged, parsed)
    assert delta["events"] == {"order": 12.0, "payment": 3.0}
    assert scrape.per_order(delta, 3) == {"events": 5.0, "deliveries": 7 / 3, "transactions": 5 / 3}
    assert scrape.per_order(delta, 0)["events"] is None
    # An idle system's 2 events/s over 3 s are not the orders': taken off in proportion.
    net = scrape.without_idle(delta, {"events": 2.0}, 3.0)
    assert net["events"] == {"order": pytest.approx(7.2), "payment": pytest.approx(1.8)}
    assert net["deliveries"] == delta["deliveries"]
    assert scrape.without_idle(delta, {"events": 100.0}, 3.0)["events"] == {
        "order": 0,
        "payment": 0,
    }


def order(status: str, paid: bool, refunded: bool = False, total: str = "10.00") -> Placed:
    body = {
        "status": status,
        "total": total,
        "payment": {"paid": paid, "refunded": refunded},
        "items": [{"productId": "p1", "quantity": 2}],
    }
    return Placed("o", 0, 0.0, order=body)


def test_cpu_is_read_for_a_process_tree_and_divided_per_order() -> None:
    first = cpu.sample(os.getpid())  # this process as the "system": its tree includes it
    assert first is not None and first["system"] >= first["bench"] > 0
    assert {"broker", "database", "system:main"} <= first.keys()
    later = dict(first, system=first["system"] + 0.5)
    assert cpu.per_order(first, later, 10) == pytest.approx(
        {"bench": 0.0, "system": 50.0, "system:main": 0.0, "broker": 0.0, "database": 0.0}
    )
    assert cpu.per_order(first, later, 0) is None and cpu.per_order(None, later, 1) is None


def test_an_order_is_settled_only_with_its_money_settled() -> None:
    assert settled(order("DELIVERING", paid=True).order)
    assert settled(order("CANCELLED", paid=True, refunded=True).order)
    assert settled(order("CANCELLED", paid=False).order)
    assert not settled(order("CANCELLED", paid=True).order)  # capture not refunded yet
    assert not settled(order("PAID", paid=True).order)
    assert not settled(order("RESERVED", paid=False).order)


def test_money_and_units_count_only_orders_not_cancelled() -> None:
    placed = [
        order("DELIVERING", paid=True),
        order("CANCELLED", paid=True, refunded=True),
        order("CANCELLED", paid=False),
    ]
    assert money(placed)["ok"] and reserved_units(placed) == {"p1": 2}
    unrefunded = [*placed, order("CANCELLED", paid=True)]
    assert not money(unrefunded)["ok"]


@pytest.mark.parametrize(
    "args",
    [
        ["--broker", "kafka"],
        ["--shoppers", "0"],
        ["--broker", "rabbitmq"],  # with sqlite
        ["--target", "http://x"],  # without --wdm
        ["--wdm", "--target", "ftp://x"],
        ["--wdm", "--target", "http://127.0.0.1:9"],  # nothing answers on the discard port
        ["--carrier-delay", "soon"],
        ["--rate", "0"],
        ["--rate", "-5"],
        ["--rate", "fast"],
        ["--rate", "nan"],
        ["--group", "catalog,cart"],  # embedded: one process already
        ["--broker", "rabbitmq", "--database", "postgres", "--group", "catalog,nope"],
        ["--webhook-subscriber", "--without", "webhooks"],
    ],
)
def test_bad_flags_are_clear_errors(args: list[str]) -> None:
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 2, result.output


def test_open_loop_arrivals_are_bounded_by_duration_and_orders() -> None:
    assert arrivals(5, None, 5.0) == 25
    assert arrivals(0.1, None, 30.0) == 3  # not 4 from 3.0000000000000004
    assert arrivals(50, 7, 30.0) == 7 and arrivals(2.5, 100, None) == 100
    assert arrivals(3, None, 0.5) == 2  # at 0 s and at 0.33 s
    with pytest.raises(ValueError):
        arrivals(1, None, None)


class SlowShop(Client):
    """Answers every request of a trip; the wait for the outcome takes ``wait`` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__()
        self.wait = wait

    async def request(self, method: str, path: str, **kw: Any) -> Response:
        if path.endswith("/wait"):
            await asyncio.sleep(self.wait)
            return Response(method, path, 200, b'{"outcome": "RESERVED"}')
        if path.endswith("/checkout"):
            return Response(method, path, 202, b'{"orderId": "o"}')
        return Response(method, path, 200, b'{"items": []}')


async def test_open_loop_counts_the_arrivals_no_shopper_was_free_for() -> None:
    # 20/s for 0.5 s = 10 arrivals, 50 ms apart; each trip holds its shopper 0.12 s, so two
    # shoppers serve two arrivals of every three (7): the rest are missed, none dropped.
    ticks: list[int] = []
    started = time.monotonic()
    load = await shop_open(SlowShop(0.12), [{}, {}], ["p"], 20, None, 0.5, ticks.append)
    assert load.arrivals == 10 and sum(ticks) == 10
    assert 5 <= len(load.placed) <= 8 and load.missed == 10 - len(load.placed)
    assert all(p.outcome == "RESERVED" for p in load.placed) and not load.errors
    # The last arrival at 0.45 s, then its trip finishes.
    assert 0.45 < time.monotonic() - started < 2 and load.seconds >= 0.45
    unhurried = await shop_open(SlowShop(0.01), [{}, {}], ["p"], 20, 4, None, ticks.append)
    assert unhurried.arrivals == 4 and unhurried.missed == 0 and len(unhurried.placed) == 4


async def test_raw_sqlite_and_bare_http_at_tiny_sizes(tmp_path: Path) -> None:
    assert await raw.sqlite(0.2, tmp_path) > 0
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir()))
    assert (await raw.bare_http(0.3, clients=2)).rate > 0


async def test_the_ceilings_raw_limits_are_the_medians_of_interleaved_rounds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """One trial of each per round, in turn (the machine's speed drifts: each primitive sees
    every stretch of it), and the median of each; the rounds are kept and shown."""
    trials: list[str] = []
    rates = {"db": iter([900.0, 3000.0, 2000.0]), "1": iter([4000.0, 1000.0, 3000.0])}
    rates["3"] = iter([1500.0, 1200.0, 500.0])

    async def database(seconds: float, connections: int, run_id: str) -> float:
        assert seconds == pytest.approx(2.0)  # the database's seconds spread over the rounds
        trials.append("db")
        return next(rates["db"])

    async def broker(url: str, messages: int, queues: int) -> float:
        trials.append(str(queues))
        return next(rates[str(queues)])

    async def bare(seconds: float, clients: int) -> Any:
        trials.append("http")
        return type("Hammered", (), {"rate": 10_000.0, "errors": {}})()

    monkeypatch.setattr(raw, "postgres", database)
    monkeypatch.setattr(raw, "rabbitmq", broker)
    monkeypatch.setattr(raw, "bare_http", bare)
    config = Config(broker="rabbitmq", database="postgres", raw_seconds=6.0, raw_rounds=3)
    found = await measure_raw(config, _progress(Console(file=io.StringIO())), "t", tmp_path)
    assert trials == ["http", "db", "1", "3", "db", "1", "3", "db", "1", "3"]
    assert found["database"]["tps"] == 2000.0
    assert found["database"]["rounds"] == [900.0, 3000.0, 2000.0]
    b = found["broker"]
    assert (b["oneQueue"], b["threeQueues"]) == (3000.0, 1200.0)
    # Each round's costs from its own two trials, then the median of each cost: round 1's
    # fast one-queue trial is never paired with round 3's slow fanned-out one.
    costs = [
        stats.BrokerCost.from_rates(r1, r3) for r1, r3 in ((4e3, 1.5e3), (1e3, 1.2e3), (3e3, 5e2))
    ]
    assert b["publishCostMs"] == pytest.approx(sorted(c.publish for c in costs)[1] * 1000)
    assert b["deliveryCostMs"] == pytest.approx(sorted(c.delivery for c in costs)[1] * 1000)
    shown = markdown({"run": _RUN, "raw": found, "scenarios": {}})
    assert "| 3,000.0 (1,000.0–4,000.0) |" in shown
    assert "| 2,000.0 (900.0–3,000.0) |" in shown


_RUN = {
    "broker": "rabbitmq",
    "database": "postgres",
    "date": "2026-12-04 10:00 UTC",
    "id": "t",
    "machine": "x86_64, 2 cores",
    "loadAverageAtStart": [0.0, 0.0, 0.0],
    "config": {},
}


def test_without_matplotlib_the_results_are_saved_and_the_plot_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """matplotlib is the optional `bench` extra: a base install still saves the results."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises
    written, plotted = save({"run": _RUN, "raw": {}, "scenarios": {}}, tmp_path)
    assert plotted is None and written.exists()
    assert not list(tmp_path.glob("*.png"))
    told = io.StringIO()
    tell_saved(Console(file=told, width=250), written, plotted)
    assert "pip install 'mercato[bench]'" in told.getvalue()


async def test_the_client_counts_failures_by_kind_and_bounds_each_request() -> None:
    assert error_kind("POST checkout", Response("POST", "/x", 503, b"")) == "POST checkout 503"
    refused = await hammer("http://127.0.0.1:9", lambda i: "/", 0.1, clients=1)  # discard port
    assert refused.requests == 0 and refused.errors
    assert all(kind.startswith("GET ") and not kind[4:].isdigit() for kind in refused.errors)
    with socket.socket() as silent:  # takes connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        async with Client(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.1) as http:
            started = time.monotonic()
            with pytest.raises(TimeoutError) as failure:
                await http.get("/", timeout=0.4)  # the request's own timeout wins
            assert 0.35 < time.monotonic() - started < 3
    assert error_kind("GET wait", failure.value) == "GET wait TimeoutError"


@pytest.mark.postgres
async def test_raw_postgres_transactions(postgres_server: str) -> None:
    assert await raw.postgres(0.3, connections=2, run_id="t" + str(id(postgres_server))[-6:]) > 0


@pytest.mark.rabbitmq
async def test_raw_rabbitmq_one_queue_and_fanned_out(rabbitmq_url: str) -> None:
    assert await raw.rabbitmq(rabbitmq_url, 50, 1) > 0
    assert await raw.rabbitmq(rabbitmq_url, 30, 3) > 0


@pytest.mark.nats
async def test_raw_nats_jetstream_one_queue_and_fanned_out(nats_url: str) -> None:
    assert await raw.nats_jetstream(nats_url, 50, 1) > 0
    assert await raw.nats_jetstream(nats_url, 30, 3) > 0


async def tiny_run(tmp_path: Path, **sizes: Any) -> tuple[dict[str, Any], str]:
    """A run at tiny sizes (no raw limits; embedded unless told): its results and its tables
    as shown."""
    config = Config(
        products=2,
        skip_raw=True,
        browse_seconds=0.5,
        idle_seconds=0.5,
        settle_timeout=20,
        out=tmp_path,
        **sizes,
    )
    results = await bench(config, Console(file=io.StringIO()))
    shown = io.StringIO()
    show(Console(file=shown, width=250), results)
    assert "Invariants" in shown.getvalue() and "FAILED" not in shown.getvalue()
    return results, shown.getvalue()


@pytest.mark.slow  # starts the system (one process)
async def test_a_tiny_embedded_run_reports_every_figure_and_its_invariants_hold(
    tmp_path: Path,
) -> None:
    results, _ = await tiny_run(tmp_path, shoppers=3, orders=3, duration=None, scarce_stock=1)
    path, plotted = await asyncio.to_thread(save, results, tmp_path)
    assert plotted is not None
    assert (await asyncio.to_thread(plotted.stat)).st_size > 0
    results = json.loads(await asyncio.to_thread(path.read_text))
    assert set(results["scenarios"]) == {"plenty", "scarce"}
    for name, s in results["scenarios"].items():
        assert s["orders"] == 3, name
        assert s["invariants"]["ok"], s["invariants"]
        assert s["latencyMs"]["paid"]["p99"] is not None
        assert s["costPerOrder"]["events"] > 0 and s["costPerOrder"]["transactions"] > 0
        assert s["ceiling"]["ordersPerSecond"] is None  # no raw limits measured
        # /proc counts CPU in 10 ms ticks: the bench's own share of three orders can be none.
        assert s["cpuMsPerOrder"]["system"] > 0 and s["cpuMsPerOrder"]["bench"] >= 0
    plenty, scarce = results["scenarios"]["plenty"], results["scenarios"]["scarce"]
    assert plenty["reservedPerSecond"] > 0 and plenty["latencyMs"]["reserved"]["count"] == 3
    # 3 orders of 1–2 units on 4 products of 1 unit each: never more than the 4 units out.
    assert scarce["invariants"]["stock"]["unitsReserved"] <= 4
    assert results["browse"]["rps"] > 0
    assert set(results["idlePerSecond"]) == {"events", "deliveries", "transactions"}


@pytest.mark.slow  # starts the system (one process)
async def test_the_wdm_load_and_its_consistency_test(tmp_path: Path) -> None:
    """20 users with 1 credit each check out one item with 2 units at once: 2 are paid, and
    the first reading right after the last answer finds 2 credits spent and 2 units sold."""
    results, shown = await tiny_run(
        tmp_path,
        scenarios=("plenty",),
        shoppers=2,
        orders=2,
        duration=None,
        wdm=True,
        wdm_seconds=1.0,
        wdm_users=20,
        wdm_items=3,
    )
    (target,) = results["wdm"]["targets"]
    assert target["checkouts"] > 0 and not target["errors"], target
    checked = results["wdm"]["consistency"]
    assert checked["outcomes"] == {"paid": 2, "refused": 18}, checked
    assert (checked["creditsSpent"], checked["stockSold"], checked["consistent"]) == (2, 2, True)
    assert "consistent at the first reading" in shown


@pytest.mark.slow  # starts the system (one process)
async def test_a_tiny_run_with_a_webhook_subscriber_to_every_event(tmp_path: Path) -> None:
    sizes = {"scenarios": ("plenty",), "shoppers": 2, "orders": 2, "duration": None}
    results, _ = await tiny_run(tmp_path, webhook_subscriber=True, **sizes)
    assert results["run"]["config"]["webhook_subscriber"] is True
    assert results["scenarios"]["plenty"]["invariants"]["ok"]


@pytest.mark.slow  # starts the system (one process)
async def test_an_open_loop_run_offers_its_rate_and_its_invariants_hold(tmp_path: Path) -> None:
    results, shown = await tiny_run(tmp_path, scenarios=("plenty",), shoppers=5, rate=5, duration=2)
    assert "missed (no free shopper of 5)" in shown
    plenty = results["scenarios"]["plenty"]
    offered = plenty["arrivals"]
    assert offered["offeredPerSecond"] == 5 and offered["count"] == 10  # 5/s × 2 s
    assert plenty["invariants"]["ok"], plenty["invariants"]
    assert 0 < plenty["orders"] <= 10 - offered["missed"]
    assert plenty["latencyMs"]["reserved"]["count"] == plenty["orders"]
    assert plenty["seconds"] >= 1.8  # the last arrival at 1.8 s


async def test_a_target_without_the_wdm_api_is_told_how_to_serve_it() -> None:
    class NoWdm:
        async def post(self, path: str, **_: Any) -> Response:
            return Response("POST", path, 404, b'{"detail": "no route"}')

    with pytest.raises(RuntimeError, match="MERCATO_WDM_API=1"):
        await wdm.batch_init(NoWdm(), users=2, items=2)  # type: ignore[arg-type]


@pytest.mark.slow  # starts the system: two processes on RabbitMQ and PostgreSQL
@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_a_tiny_run_with_the_services_in_two_processes(
    tmp_path: Path, postgres_server: str, rabbitmq_url: str
) -> None:
    groups = ("gateway,catalog,cart,order,identity", "inventory,payment,shipping")
    results, shown = await tiny_run(
        tmp_path,
        broker="rabbitmq",
        database="postgres",
        scenarios=("plenty",),
        shoppers=2,
        orders=2,
        duration=None,
        groups=groups,
        without=OPTIONAL,  # the saga's eight services only: two processes in all
    )
    together = ["identity+catalog+cart+order+gateway", "inventory+payment+shipping"]
    assert results["run"]["processes"] == together
    assert f"processes: 2: {', '.join(together)}" in " ".join(shown.split())
    plenty = results["scenarios"]["plenty"]
    assert plenty["orders"] == 2 and plenty["invariants"]["ok"], plenty["invariants"]
    # Both processes' counters were read: every order's events were published and delivered.
    assert plenty["costPerOrder"]["events"] > 0 and plenty["costPerOrder"]["deliveries"] > 0
    assert {"system:identity", "system:inventory"} <= set(plenty["cpuMsPerOrder"])
