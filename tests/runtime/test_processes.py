"""The demo pair as two OS processes (``mercato serve``) on RabbitMQ and PostgreSQL.

Each process is started exactly as an operator would start it; the test talks to it only
through its /readyz, the ledger's gRPC port and the services' databases. SIGTERM drains: a
handler in the middle of its work when the signal comes commits, the process exits 0, and the
events it had not taken yet are still there for the next start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import httpx
import pytest

from mercato.bench.system import free_port as free_range
from mercato.platform.storage.sql import Database
from tests.conftest import eventually
from tests.demo.ledger import call_record
from tests.demo.probe import ROOT, arrivals, count_of, drop_namespace, service_engine

_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this run. Not one the OS picks (``bind``
    to port 0): two picks can be the same port, and one in the ephemeral range can be taken
    by a service's own outgoing connection before the service binds it. A repeat once gave
    the gateway's port to another service, which answered its /readyz."""
    while (port := free_range()) in _HANDED_OUT:
        pass
    _HANDED_OUT.add(port)
    return port


class Served:
    """One ``python -m mercato serve MODULE:ATTR`` process, its logs in a file. A spec of
    several services (``"catalog,cart"``) runs them together, a gRPC port each."""

    def __init__(self, spec: str, env: dict[str, str], logs: Path):
        self.spec, self.env, self.logs = spec, env, logs
        self.http_port = free_port()
        self.grpc_ports = {name: free_port() for name in spec.split(",")}
        self.grpc_port = next(iter(self.grpc_ports.values()))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **self.env,
            "MERCATO_PORT": str(self.http_port),
            "MERCATO_GRPC_PORT": str(self.grpc_port),
        }
        with self.logs.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mercato", "serve", *self.grpc_ports],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> None:
        async def check() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"{self.spec} exited:\n{self.logs.read_text()}"
            try:
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"http://127.0.0.1:{self.http_port}/readyz")
            except httpx.TransportError:
                return False
            return answer.status_code == 200 and answer.json()["status"] == "ok"

        # Generous: eight processes importing everything at once on two busy cores take a while;
        # a process that dies is reported at once by the check above.
        await eventually(check, timeout=120, interval=0.1)

    async def stop(self) -> int:
        """SIGTERM, then wait for the exit; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.proc.wait, 30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def logged(self, text: str) -> bool:
        return text in self.logs.read_text()


@pytest.fixture
async def pair(
    postgres_template: str, rabbitmq_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Served, Served]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env |= {
        "PYTHONPATH": str(ROOT),
        "MERCATO_BROKER_URL": rabbitmq_url,
        "MERCATO_DATABASE_URL": postgres_template,
        "MERCATO_DATA_DIR": str(tmp_path),
        "MERCATO_RELAY_POLL_INTERVAL": "0.05",
        "MERCATO_RETRY_BASE_DELAY": "0.05",
        "MERCATO_LOG_FORMAT": "json",
    }
    ledger = Served("tests.demo.ledger:service", env, tmp_path / "ledger.log")
    tally = Served("tests.demo.tally:service", env, tmp_path / "tally.log")
    try:
        yield ledger, tally
    finally:
        ledger.kill()
        tally.kill()
        await drop_namespace(rabbitmq_url, "mercato", ["tally"])


async def test_the_pair_runs_as_two_processes_and_sigterm_drains(
    pair: tuple[Served, Served], postgres_template: str, tmp_path: Path
) -> None:
    ledger, tally = pair
    ledger.start()
    tally.start()
    await asyncio.gather(ledger.ready(), tally.ready())
    engine = await service_engine(postgres_template, "tally", tmp_path)
    account, slow = f"acc-{uuid.uuid4().hex[:8]}", f"slow-{uuid.uuid4().hex[:8]}"
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ledger.grpc_port}") as channel:
            for _ in range(3):
                await call_record(channel, account, "1.25")
            await eventually(lambda: _counted(engine, account, 3), timeout=20)

            # A handler that takes a while, two more events behind it, and SIGTERM meanwhile.
            await call_record(channel, slow, "1.00", pause=1.5)
            await eventually(lambda: tally.logged("tally pausing"), timeout=20)
            for _ in range(2):
                await call_record(channel, slow, "1.00")
            assert await tally.stop() == 0, tally.logs.read_text()
            assert tally.logged("tally paused and counted")
            assert await count_of(engine, slow) >= 1, "the handler in hand committed"

            tally.start()  # what it had not taken is still on its queue
            await tally.ready()
            await eventually(lambda: _counted(engine, slow, 3), timeout=20)
            assert [n for _, n in await arrivals(engine, slow)] == [1, 2, 3]
            assert [n for _, n in await arrivals(engine, account)] == [1, 2, 3]
        assert await ledger.stop() == 0, ledger.logs.read_text()
        assert await tally.stop() == 0, tally.logs.read_text()
        assert "Traceback" not in ledger.logs.read_text() + tally.logs.read_text()
    finally:
        await engine.dispose()


async def _counted(engine: Database, account: str, expected: int) -> bool:
    return await count_of(engine, account) >= expected
