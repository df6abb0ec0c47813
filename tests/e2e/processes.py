"""Running services as separate ``mercato serve`` processes on a broker and PostgreSQL, for the
end-to-end tests that go through the gateway's HTTP port."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import grpc.aio
from grpc.health.v1 import health_pb2, health_pb2_grpc

from mercato.services import consumes_events
from tests.demo.probe import ROOT, drop_namespace
from tests.runtime.test_processes import Served


@asynccontextmanager
async def serving(
    names: Sequence[str],
    *,
    broker_url: str,
    postgres_template: str,
    data_dir: Path,
    admin: dict[str, str],
    **settings: str,
) -> AsyncIterator[str]:
    """Start ``names`` (the gateway among them), each its own process (``"catalog,cart"``: the
    two in one process); yield the gateway's base URL. On the way out: every process stops
    cleanly (exit 0), logged no traceback and no card number, and what it left on the broker is
    gone."""
    env = environment(broker_url, postgres_template, data_dir, admin, **settings)
    served = {name: Served(name, env, data_dir / f"{name}.log") for name in names}
    targets = grpc_targets(served.values())
    gateway = next(s for s in served.values() if "gateway" in s.grpc_ports)
    for process in served.values():
        process.env = {**env, "MERCATO_GRPC_TARGETS": targets}
    try:
        for wave in in_waves(served.values()):
            for process in wave:
                process.start()
            await asyncio.gather(*(p.ready() for p in wave))
        for process in served.values():  # each service where the others are told it is
            for name, port in process.grpc_ports.items():
                if name != "gateway":  # the gateway serves HTTP only
                    assert await _grpc_serving(port), f"{name}: no gRPC on :{port}"
        yield f"http://127.0.0.1:{gateway.http_port}"
        for name, process in served.items():
            assert await process.stop() == 0, process.logs.read_text()
            assert "Traceback" not in process.logs.read_text(), name
            assert "4242424242424242" not in process.logs.read_text(), name
    finally:
        for process in served.values():
            process.kill()
        services = [n for s in served.values() for n in s.grpc_ports if n != "gateway"]
        await drop_namespace(broker_url, "mercato", services)


def in_waves(processes: Iterable[Served]) -> list[list[Served]]:
    """The processes that consume events, then the others (they only publish), as
    ``mercato up --processes`` starts them: an event published before its consumer's queue
    exists never reaches it."""
    processes = list(processes)
    consumers = [p for p in processes if consumes_events(list(p.grpc_ports))]
    return [consumers, [p for p in processes if p not in consumers]]


def environment(
    broker_url: str,
    postgres_template: str,
    data_dir: Path,
    admin: dict[str, str],
    **settings: str,
) -> dict[str, str]:
    """The environment of a ``mercato serve`` process of a test: this one's minus any
    MERCATO_* variable, then the broker, the databases, quick retries and polls, no demo
    catalog, JSON logs, and ``settings`` (``carrier_delay="1"``: MERCATO_CARRIER_DELAY)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    return env | {
        "PYTHONPATH": str(ROOT),
        "MERCATO_BROKER_URL": broker_url,
        "MERCATO_DATABASE_URL": postgres_template,
        "MERCATO_DATA_DIR": str(data_dir),
        "MERCATO_RELAY_POLL_INTERVAL": "0.05",
        "MERCATO_RETRY_BASE_DELAY": "0.05",
        "MERCATO_DEMO_CATALOG": "0",
        "MERCATO_ADMIN_EMAIL": admin["email"],
        "MERCATO_ADMIN_PASSWORD": admin["password"],
        "MERCATO_LOG_FORMAT": "json",
        **{f"MERCATO_{k.upper()}": v for k, v in settings.items()},
    }


def grpc_targets(processes: Iterable[Served]) -> str:
    """MERCATO_GRPC_TARGETS for these processes: every service's address, or addresses (its
    replicas, ``order=ipv4:127.0.0.1:A,127.0.0.1:B``)."""
    addresses: dict[str, list[str]] = {}
    for process in processes:
        for name, port in process.grpc_ports.items():
            addresses.setdefault(name, []).append(f"127.0.0.1:{port}")
    return ",".join(
        f"{name}={'ipv4:' if len(found) > 1 else ''}{','.join(found)}"
        for name, found in addresses.items()
    )


async def _grpc_serving(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
