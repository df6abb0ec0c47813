"""The bench's outputs: rich tables on the terminal, the JSON results file, the PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from mercato.bench import stats


def _n(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def median_of(value: float, rounds: list[float] | None) -> str:
    """A raw rate taken in rounds: the median, and the rounds' range beside it."""
    if not rounds or len(rounds) < 2:
        return _n(value)
    return f"{_n(value)} ({_n(min(rounds))}–{_n(max(rounds))})"


def cpu_split(ms: dict[str, float] | None) -> str:
    """CPU per order: the system under test, the broker, the database server, the bench."""
    if not ms:
        return "—"
    return "/".join(_n(ms.get(part), 0) for part in ("system", "broker", "database", "bench"))


OPEN_LOOP = ("offered/s", "arrivals", "missed (no free shopper)")


def open_loop(results: dict[str, Any]) -> bool:
    return any(s.get("arrivals") for s in results["scenarios"].values())


def arrivals(s: dict[str, Any]) -> list[str]:
    """The open loop's columns: rate offered, arrivals due, arrivals missed."""
    a = s.get("arrivals")
    if not a:
        return ["closed loop", "—", "—"]
    return [_n(a["offeredPerSecond"]), str(a["count"]), str(a["missed"])]


def tables(results: dict[str, Any]) -> list[Table]:
    run = results["run"]
    title = f"mercato bench — {run['broker']} + {run['database']}, {run['date']}"
    offered = open_loop(results)
    speed = Table(
        "scenario",
        *(OPEN_LOOP if offered else ()),
        "orders",
        "s",
        "→PAID/s",
        "→RESERVED/s",
        "browse/s",
        "PAID p50/p90/p99/max ms",
        "RESERVED p50/p90/p99/max ms",
        "RESERVED p99/p50",
        "errors",
        title=title,
    )
    cost = Table(
        "scenario",
        "events/order",
        "deliveries/order",
        "transactions/order",
        "ceiling orders/s",
        "RESERVED/s % of ceiling",
        "CPU ms/order system/broker/db/bench",
        title="Cost per order and ceiling",
    )
    checks = Table(
        "scenario", "by status", "nothing lost", "no oversell", "money", "ok", title="Invariants"
    )
    for name, s in results["scenarios"].items():
        lat = s["latencyMs"]

        def four(k: str, lat: dict[str, Any] = lat) -> str:
            return "/".join(_n(lat[k][p], 0) for p in ("p50", "p90", "p99", "max"))

        errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "0"
        speed.add_row(
            name,
            *(arrivals(s) if offered else ()),
            str(s["orders"]),
            _n(s["seconds"]),
            _n(s["paidPerSecond"]),
            _n(s["reservedPerSecond"]),
            _n(s["browsePerSecond"]),
            four("paid"),
            four("reserved"),
            stats.tail(lat["reserved"]),
            errors,
        )
        c, ceiling = s["costPerOrder"], s["ceiling"]
        cost.add_row(
            name,
            _n(c["events"], 2),
            _n(c["deliveries"], 2),
            _n(c["transactions"], 2),
            _n(ceiling["ordersPerSecond"]),
            _n(ceiling["percent"]) + " %",
            cpu_split(s.get("cpuMsPerOrder")),
        )
        inv = s["invariants"]
        checks.add_row(
            name,
            ", ".join(f"{k} {v}" for k, v in inv["byStatus"].items()),
            ("yes" if inv["nothingLost"] else f"NO ({len(inv['unsettled'])} unsettled)")
            + (f" (+{n} unanswered)" if (n := inv.get("ordersFromUnansweredCheckouts")) else ""),
            "yes" if inv["stock"]["ok"] else "NO",
            "yes" if inv["money"]["ok"] else "NO",
            "[green]ok[/]" if inv["ok"] else "[red]FAILED[/]",
        )
    scenarios: dict[str, dict[str, Any]] = results["scenarios"]
    name, first = next(iter(scenarios.items()), ("", {}))
    limits = Table(
        "limit", "raw", f"Mercato ({name})", "% of raw", title="Raw limits, same run, same machine"
    )
    raw, browse = results["raw"], results.get("browse", {})
    use: dict[str, float] = first.get("usage", {})

    def pct(part: float | None, whole: float | None) -> str:
        return _n(100 * part / whole) + " %" if part is not None and whole else "—"

    if raw.get("http"):
        bare = raw["http"]["rps"]
        limits.add_row(
            "HTTP req/s: bare uvicorn | gateway browse only",
            _n(bare),
            _n(browse.get("rps")),
            pct(browse.get("rps"), bare),
        )
    if raw.get("database"):
        d = raw["database"]
        tps = use.get("transactionsPerSecond")
        limits.add_row(
            f"{d['kind']}: handler transactions/s",
            median_of(d["tps"], d.get("rounds")),
            _n(tps),
            pct(tps, d["tps"]),
        )
    if raw.get("broker"):
        b = raw["broker"]
        eps = use.get("eventsPerSecond")
        limits.add_row(
            f"{b['kind']}: msgs/s, 1 queue | events/s",
            median_of(b["oneQueue"], b.get("oneQueueRounds")),
            _n(eps),
            pct(eps, b["oneQueue"]),
        )
        limits.add_row(
            f"{b['kind']}: msgs/s, fanned out to 3",
            median_of(b["threeQueues"], b.get("threeQueuesRounds")),
            "",
            "",
        )
    found = [speed, cost, checks, limits]
    drains = webhook_drains(results)
    if drains:
        table = Table(
            "scenario",
            "none pending by, s after the load",
            "webhooks CPU ms/order, load / after",
            title="Webhook subscriber: its deliveries made",
        )
        for row in drains:
            table.add_row(*row)
        found.append(table)
    wdm = results.get("wdm")
    if wdm:
        table = Table(
            "target",
            "checkouts/s",
            "paid/refused",
            "checkout p50/p90/p99/max ms",
            "errors",
            "× first",
            title="WDM benchmark load (create, addItem ×1–3, checkout, find)",
        )
        for t in wdm["targets"]:
            if "failed" in t:
                table.add_row(t["url"], "—", "—", "—", f"[red]{t['failed']}[/]", "—")
                continue
            lat = t["latencyMs"]
            table.add_row(
                t["url"],
                _n(t["checkoutsPerSecond"]),
                f"{t['outcomes'].get('paid', 0)}/{t['outcomes'].get('refused', 0)}",
                "/".join(_n(lat[p], 0) for p in ("p50", "p90", "p99", "max")),
                ", ".join(f"{k}: {v}" for k, v in t["errors"].items()) or "0",
                _n(t["ratioToFirst"], 2),
            )
        found.append(table)
        checked = wdm.get("consistency")
        if checked:
            found.append(_consistency(checked))
    return found


def _consistency(checked: dict[str, Any]) -> Table:
    table = Table(
        "users × 1 credit",
        "units",
        "checkouts answered in s",
        "paid/refused/other",
        "credits spent",
        "units sold",
        "consistent at the first reading",
        title="WDM consistency test (every checkout at once, read right after the last answer)",
    )
    if "failed" in checked:
        table.add_row("—", "—", "—", "—", "—", "—", f"[red]{checked['failed']}[/]")
        return table
    outcomes = dict(checked["outcomes"])
    paid, refused = outcomes.pop("paid", 0), outcomes.pop("refused", 0)
    table.add_row(
        str(checked["users"]),
        str(checked["stock"]),
        _n(checked["checkoutSeconds"], 1),
        f"{paid}/{refused}/{sum(outcomes.values())}",
        str(checked["creditsSpent"]),
        str(checked["stockSold"]),
        "yes" if checked["consistent"] else "[red]NO[/]",
    )
    return table


def show(console: Console, results: dict[str, Any]) -> None:
    for table in tables(results):
        console.print(table)
    run = results["run"]
    console.print(
        f"machine: {run['machine']}; load average at start {run['loadAverageAtStart']}, "
        f"at end {run.get('loadAverageAtEnd')}; phases (s): {run.get('phases')}"
    )
    console.print(f"processes: {_processes(run)}")
    idle = results.get("idlePerSecond")
    if idle:
        console.print(
            "idle system (taken off the per-order figures): "
            + ", ".join(f"{v:.1f} {k}/s" for k, v in idle.items())
        )
    for name, s in results["scenarios"].items():
        if a := s.get("arrivals"):
            colour = "yellow" if a["missed"] else "green"
            console.print(
                f"open loop, {name}: {a['count']} arrivals at {a['offeredPerSecond']:g}/s, "
                f"[{colour}]{a['missed']} missed (no free shopper of {s['shoppers']})[/]; "
                f"started late by p99 {_n(a['lateMs']['p99'], 0)} ms, "
                f"max {_n(a['lateMs']['max'], 0)} ms (the bench's own loop)"
            )
    console.print(f"[dim]ceiling: {results['ceilingFormula']}[/dim]")
    for note in results["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")


def webhook_drains(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """With --webhook-subscriber, per scenario: when no delivery was pending any more, and the
    webhooks process's CPU during the load and after it."""
    rows = []
    for name, s in results["scenarios"].items():
        drain = s.get("webhookDrain")
        if not drain:
            continue
        during = (s.get("cpuMsPerOrder") or {}).get("system:webhooks")
        after = (drain.get("cpuMsPerOrder") or {}).get("system:webhooks")
        waited = drain["secondsAfterLoad"]
        shown = _n(waited) if waited is not None else "NOT DRAINED"
        rows.append((name, shown, f"{_n(during)} / {_n(after)}"))
    return rows


def markdown(results: dict[str, Any]) -> str:
    """The figures as Markdown tables, for docs/performance.md."""
    run, raw, browse = results["run"], results["raw"], results.get("browse", {})
    flags = {k: v for k, v in run["config"].items() if k in SIZES}
    offered = open_loop(results)
    extra = OPEN_LOOP if offered else ()
    lines = [
        f"**{run['broker']} + {run['database']}**, {run['date']}, run {run['id']} "
        f"({run['machine']}; load average {run['loadAverageAtStart']} at start, "
        f"{run.get('loadAverageAtEnd')} at end); sizes {flags}; processes: {_processes(run)}",
        "",
        "| scenario | "
        + "".join(f"{column} | " for column in extra)
        + "orders | →PAID/s | →RESERVED/s | browse/s | PAID p50/p90/p99/max ms "
        "| RESERVED p50/p90/p99/max ms | RESERVED p99/p50 | events/order | deliveries/order "
        "| transactions/order | ceiling/s | % of ceiling | CPU ms/order system/broker/db/bench "
        "| invariants | errors |",
        "| --- " * (16 + len(extra)) + "|",
    ]
    for name, s in results["scenarios"].items():
        lat, c, inv = s["latencyMs"], s["costPerOrder"], s["invariants"]

        def four(k: str, lat: dict[str, Any] = lat) -> str:
            return "/".join(_n(lat[k][p], 0) for p in ("p50", "p90", "p99", "max"))

        errors = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "0"
        statuses = ", ".join(f"{k} {v}" for k, v in inv["byStatus"].items())
        lines.append(
            f"| {name} | "
            + "".join(f"{cell} | " for cell in (arrivals(s) if offered else ()))
            + f"{s['orders']} | {_n(s['paidPerSecond'])} | {_n(s['reservedPerSecond'])} "
            f"| {_n(s['browsePerSecond'])} | {four('paid')} | {four('reserved')} "
            f"| {stats.tail(lat['reserved'])} "
            f"| {_n(c['events'], 2)} | {_n(c['deliveries'], 2)} | {_n(c['transactions'], 2)} "
            f"| {_n(s['ceiling']['ordersPerSecond'])} | {_n(s['ceiling']['percent'])} "
            f"| {cpu_split(s.get('cpuMsPerOrder'))} "
            f"| {'ok' if inv['ok'] else 'FAILED'} ({statuses}) | {errors} |"
        )
    drains = webhook_drains(results)
    if drains:
        lines += [
            "",
            "| scenario | webhook subscriber: none pending by, s after the load "
            "| webhooks CPU ms/order, load / after |",
            "| --- | --- | --- |",
        ]
        lines += [f"| {name} | {waited} | {cpu} |" for name, waited, cpu in drains]
    lines += [
        "",
        "| raw limit | rate (median; rounds' range) | Mercato | % |",
        "| --- | --- | --- | --- |",
    ]
    if raw.get("http"):
        lines.append(
            f"| bare uvicorn req/s vs gateway browse only | {_n(raw['http']['rps'])} "
            f"| {_n(browse.get('rps'))} | {_n(browse.get('percentOfBare'))} |"
        )
    if raw.get("database"):
        lines.append(
            f"| {raw['database']['kind']} transactions/s "
            f"| {median_of(raw['database']['tps'], raw['database'].get('rounds'))} | | |"
        )
    if raw.get("broker"):
        b = raw["broker"]
        one = median_of(b["oneQueue"], b.get("oneQueueRounds"))
        three = median_of(b["threeQueues"], b.get("threeQueuesRounds"))
        lines.append(f"| {b['kind']} msgs/s, 1 queue | {one} | | |")
        lines.append(f"| {b['kind']} msgs/s, 3 queues | {three} | | |")
    for t in (results.get("wdm") or {}).get("targets", []):
        lines.append(
            f"| WDM load checkouts/s on {t['url']} | | "
            f"{t.get('failed') or _n(t['checkoutsPerSecond'])} | ×{_n(t['ratioToFirst'], 2)} |"
        )
    checked = (results.get("wdm") or {}).get("consistency")
    if checked and "failed" not in checked:
        lines.append(
            f"| WDM consistency: paid / credits spent / units sold at the first reading | | "
            f"{checked['outcomes'].get('paid', 0)} / {checked['creditsSpent']} / "
            f"{checked['stockSold']} | {'consistent' if checked['consistent'] else 'NOT'} |"
        )
    return "\n".join(lines) + "\n"


def _processes(run: dict[str, Any]) -> str:
    """``1: identity+catalog+…`` (all in one) or ``8: identity, catalog, …`` ("?" in results
    from before the bench recorded it)."""
    processes = run.get("processes")
    if not processes:
        return "?"
    return f"{len(processes)}: {', '.join(processes)}"


SIZES = ("shoppers", "rate", "orders", "duration", "products", "stock", "scarce_stock", "skip_raw")


PLOT_MISSING = "no plot: matplotlib is not installed (pip install 'mercato[bench]')"


def save(results: dict[str, Any], out: Path) -> tuple[Path, Path | None]:
    """The JSON results, the PNG plot and the Markdown tables, named by broker, database and
    run. The plot is None where matplotlib (the `bench` extra) is not installed."""
    run = results["run"]
    stem = out / f"bench-{run['broker']}-{run['database']}-{run['id']}"
    stem.with_suffix(".md").parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown(results))
    write_json(results, stem.with_suffix(".json"))
    plotted = stem.with_suffix(".png") if plot(results, stem.with_suffix(".png")) else None
    return stem.with_suffix(".json"), plotted


def tell_saved(console: Console, written: Path, plotted: Path | None) -> None:
    """Where the results went; without matplotlib, how to get the plot (as plain text: the
    brackets of ``mercato[bench]`` are not rich markup)."""
    console.print(f"results: {written}", markup=False)
    console.print(f"plot: {plotted}" if plotted else PLOT_MISSING, markup=False)


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def plot(results: dict[str, Any], path: Path) -> bool:
    """Per scenario: checkouts/s reaching PAID and RESERVED, and p50/p99 checkout→RESERVED
    latency of the checkouts sent in each second. False, and no file, without matplotlib: it
    is an optional extra so that the service's install does not carry it."""
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = results["scenarios"]
    fig, axes = plt.subplots(
        len(scenarios), 2, figsize=(12, 3.6 * max(len(scenarios), 1)), squeeze=False
    )
    for row, (name, s) in enumerate(scenarios.items()):
        series = s["series"]
        seconds = list(range(len(series["reservedPerSecond"])))
        left, right = axes[row]
        left.plot(seconds, series["paidPerSecond"], label="→ PAID")
        left.plot(seconds, series["reservedPerSecond"], label="→ RESERVED")
        left.set_title(f"{name}: checkouts per second")
        left.set_xlabel("s since start")
        left.legend()
        right.plot(seconds, series["reservedP50Ms"], label="p50")
        right.plot(seconds, series["reservedP99Ms"], label="p99")
        right.set_title(f"{name}: checkout → RESERVED latency (ms)")
        right.set_xlabel("s since start (checkout sent)")
        right.legend()
    run = results["run"]
    fig.suptitle(f"mercato bench {run['broker']} + {run['database']} — {run['date']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
