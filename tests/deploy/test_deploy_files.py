"""deploy/ agrees with the code: every service deployed, probes on the paths a process serves,
scaling on the queue the RabbitMQ adapter declares, and only settings the code reads, with
values it accepts. No container engine or cluster: the files are parsed, not run."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from mercato.platform.bus.rabbitmq import RabbitBus
from mercato.platform.runtime.system import System, create_app
from mercato.platform.settings import Settings, load_settings, parse_targets
from mercato.services import SERVICES, load_service

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# Read by the code (settings.py) though not a field: the TOML file of settings.
NOT_FIELDS = {"MERCATO_CONFIG"}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def instruction(name: str) -> list[str]:
    return [args for word, args in dockerfile() if word == name]


def image_env() -> dict[str, str]:
    pairs = re.findall(r"(\w+)=(\S+)", " ".join(instruction("ENV")))
    return dict(pairs)


def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def k8s_objects() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.rglob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and path.name != "kustomization.yaml"
    ]


def k8s(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name!r} in deploy/k8s"
    return found[0]


def container(name: str) -> dict[str, Any]:
    (only,) = k8s("Deployment", name)["spec"]["template"]["spec"]["containers"]
    return only


def checked(config: dict[str, str]) -> Settings:
    """The settings ``config`` (MERCATO_* names) makes, as a process would read them."""
    ours = {k: v for k, v in config.items() if k.startswith("MERCATO_") and k not in NOT_FIELDS}
    unknown = ours.keys() - {f"MERCATO_{field.upper()}" for field in Settings.model_fields}
    assert not unknown, f"not settings the code reads: {sorted(unknown)}"
    return load_settings(**{k.removeprefix("MERCATO_").lower(): v for k, v in ours.items()})


def interpolated(value: str) -> str:
    """Compose's ${VAR:-default}, with the default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_the_image_runs_the_mercato_cli_and_serves_a_service_by_argument() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(instruction("ENTRYPOINT")[-1]) == ["mercato"]
    assert scripts["mercato"] == "mercato.cli.main:app"
    command, service = json.loads(instruction("CMD")[-1])
    assert command == "serve" and service in SERVICES
    assert "/healthz" in instruction("HEALTHCHECK")[-1]
    env = image_env()
    exposed = set(" ".join(instruction("EXPOSE")).split())
    assert {env["MERCATO_PORT"], env["MERCATO_GRPC_PORT"]} <= exposed
    assert instruction("USER")[-1].split(":")[0].isdigit(), "numeric, for runAsNonRoot"
    assert instruction("FROM")[-1].endswith("-slim")
    assert "[" not in " ".join(instruction("RUN")), "no extras (test tools) in the image"
    checked(env)


def test_probes_ask_the_paths_every_process_serves() -> None:
    paths = {getattr(r, "path", "") for r in create_app(System([], Settings())).routes}
    assert {"/healthz", "/readyz"} <= paths
    for name in SERVICES:
        probes = container(name)
        assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
        http = next(p for p in probes["ports"] if p["name"] == "http")
        assert http["containerPort"] == int(image_env()["MERCATO_PORT"])


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_service_has_a_compose_container_and_a_kubernetes_deployment(name: str) -> None:
    service = compose()["services"][name]
    assert service["command"] == ["serve", name]
    assert service["image"] == compose()["services"]["gateway"]["image"]
    for needed in ("postgres", "rabbitmq"):
        assert service["depends_on"][needed]["condition"] == "service_healthy"
    spec = container(name)
    assert spec["args"] == ["serve", name]
    assert spec["resources"]["requests"] and spec["resources"]["limits"]
    labels = k8s("Deployment", name)["spec"]["template"]["metadata"]["labels"]
    assert k8s("Service", name)["spec"]["selector"] == labels
    assert k8s("PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"] == labels


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_consumers_scale_on_their_queue_and_the_others_on_cpu(name: str) -> None:
    if not load_service(name).handlers:
        assert k8s("HorizontalPodAutoscaler", name)["spec"]["scaleTargetRef"]["name"] == name
        return
    scaled = k8s("ScaledObject", name)["spec"]
    (trigger,) = scaled["triggers"]
    assert scaled["scaleTargetRef"]["name"] == name
    assert trigger["metadata"]["queueName"] == RabbitBus("amqp://").queue_name(name)


def test_compose_runs_replicas_of_inventory_and_payment_and_publishes_the_gateway() -> None:
    services = compose()["services"]
    assert {n for n, s in services.items() if s.get("deploy", {}).get("replicas", 1) > 1} == {
        "inventory",
        "payment",
    }
    assert services["gateway"]["ports"] == ["8000:8000"]
    assert {"test"} <= services["postgres"]["healthcheck"].keys()
    assert {"test"} <= services["rabbitmq"]["healthcheck"].keys()


def test_every_grpc_server_is_found_at_its_container_and_its_service() -> None:
    port = image_env()["MERCATO_GRPC_PORT"]
    config = next(o for o in k8s_objects() if o["kind"] == "ConfigMap")["data"]
    for where in (config, compose()["services"]["gateway"]["environment"]):
        targets = parse_targets(where["MERCATO_GRPC_TARGETS"])
        served = {n for n in SERVICES if load_service(n).grpc is not None}
        assert targets == {n: f"{n}:{port}" for n in served}
    assert all(k8s("Service", n)["spec"].get("clusterIP") == "None" for n in served)


def test_configuration_is_settings_the_code_reads_with_values_it_accepts() -> None:
    for name, service in compose()["services"].items():
        if name in SERVICES:
            env = {k: interpolated(str(v)) for k, v in service["environment"].items()}
            checked({**image_env(), **env})
    config = next(o for o in k8s_objects() if o["kind"] == "ConfigMap")["data"]
    secret = next(o for o in k8s_objects() if o["kind"] == "Secret")["stringData"]
    checked({**image_env(), **config, **secret})
    mentioned = {
        word
        for path in DEPLOY.rglob("*")
        if path.is_file()
        for word in re.findall(r"MERCATO_[A-Z0-9_]+", path.read_text())
    }
    checked(dict.fromkeys(mentioned - NOT_FIELDS))  # the names (None: no value)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    files = {str(p.relative_to(K8S)) for p in K8S.rglob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(files)
