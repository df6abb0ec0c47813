"""deploy/observability/ agrees with the code: the alert rules and the dashboard ask only for
metrics the processes serve, the dashboard shows every one of them, the collector's pipeline
is whole, and (where promtool is installed) Prometheus itself checks the configuration and
runs the alert rules' unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import mercato.platform.metrics  # noqa: F401 (registers the metrics)

OBSERVABILITY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
ALERTS = {
    "MercatoDeadLettersGrowing",
    "MercatoOutboxStuck",
    "MercatoSagaStepTimeouts",
    "MercatoServiceNotReady",
    "MercatoProcessDown",
}


def load(name: str) -> Any:
    return yaml.safe_load((OBSERVABILITY / name).read_text())


def served() -> set[str]:
    """Every sample name the processes' /metrics can show (``_total``, ``_bucket``…)."""
    return {
        sample_name
        for family in REGISTRY.collect()
        if family.name.startswith("mercato_")
        for suffix in ("", "_total", "_count", "_sum", "_bucket", "_created")
        for sample_name in [family.name + suffix]
    }


def families() -> set[str]:
    return {f.name for f in REGISTRY.collect() if f.name.startswith("mercato_")}


def named_in(expression: str) -> set[str]:
    return set(re.findall(r"\bmercato_[a-z_]+", expression))


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load("alerts.yml")["groups"] for rule in group["rules"]]


def test_the_alerts_asked_for_are_there_on_served_metrics() -> None:
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert named_in(rule["expr"]) <= served(), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]


def test_the_dashboard_shows_every_metric_and_only_served_ones() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        place = panel["gridPos"]
        assert place["x"] + place["w"] <= 24
    named = set().union(*(named_in(e) for e in dashboard_expressions()))
    assert named <= served()
    shown = {family for family in families() if any(n.startswith(family) for n in named)}
    assert shown == families(), f"not on the dashboard: {families() - shown}"


def test_the_scrape_config_reads_the_rules_and_every_service() -> None:
    from mercato.services import SERVICES

    config = load("prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    [job] = config["scrape_configs"]
    targets = {t.split(":")[0] for c in job["static_configs"] for t in c["targets"]}
    compose = yaml.safe_load((OBSERVABILITY.parent / "compose.yaml").read_text())["services"]
    assert targets <= set(compose), "targets are the Compose services"
    assert targets >= {name for name in SERVICES if name in compose}


def test_the_collectors_pipeline_is_whole() -> None:
    config = load("otel-collector.yaml")
    traces = config["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        assert traces[kind] and set(traces[kind]) <= set(config[kind]), kind
    protocols = config["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(":4317")
    assert protocols["http"]["endpoint"].endswith(":4318")
    assert traces["processors"][0] == "memory_limiter"


@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts-test.yml"],
    ],
    ids=["config", "rules", "rule-tests"],
)
def test_promtool_accepts_them(args: list[str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    done = subprocess.run(
        [promtool, *args], cwd=OBSERVABILITY, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
