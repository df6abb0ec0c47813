"""The system the fault suite breaks: every service as ``mercato serve`` processes on the
suite's RabbitMQ node and PostgreSQL, two competing replicas of every service that consumes
events (one gateway, one identity), the harness holding each process so that a case can
SIGKILL one and start it again.

The first process of every service starts on fresh databases (those that consume events
first, as ``mercato up --processes`` starts them), then, once those are ready, the second
replicas: two inventory processes starting at the same moment can fail on inventory's start-up
(``store.set_threshold`` deletes and inserts its one settings row, and the second insert is a
unique violation), which the fault suite is not about.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from mercato.services import consumes_events, ordered_names
from tests.e2e.processes import environment, grpc_targets, in_waves
from tests.runtime.test_processes import Served

ADMIN = {"email": "operator@faults.example", "password": "Faults-admin-4Rt8-Vb2q"}
CONSUMERS = tuple(n for n in ordered_names() if consumes_events([n]))


@dataclass
class System:
    """The processes by service (``processes["order"][1]``: order's second replica), the
    gateway's URL, and the services' databases."""

    processes: dict[str, list[Served]]
    postgres_template: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.processes['gateway'][0].http_port}"

    @property
    def database_prefix(self) -> str:
        return self.postgres_template.rsplit("/", 1)[1].removesuffix("{service}")

    def all(self) -> Iterator[Served]:
        for replicas in self.processes.values():
            yield from replicas

    async def kill(self, service: str, replica: int = 0) -> None:
        """SIGKILL: no drain, no goodbye to the broker or the database."""
        process = self.processes[service][replica]
        assert process.proc is not None
        process.proc.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(process.proc.wait, 30) == -signal.SIGKILL

    async def restart(self, service: str, replica: int = 0) -> None:
        """Start the process again on its ports (its log goes on), until /readyz says ok."""
        await _start(self.processes[service][replica])

    @asynccontextmanager
    async def database(self, service: str) -> AsyncIterator[Any]:
        """An asyncpg connection to ``service``'s database. The server is shared with other
        test runs: while it has no connection to spare, ask again for a while."""
        conn = await _connect(self.postgres_template.replace("{service}", service))
        try:
            yield conn
        finally:
            await conn.close()

    async def terminate_backends(self) -> int:
        """``pg_terminate_backend`` every connection to this system's databases (only
        theirs: the server is shared); how many there were."""
        url = self.postgres_template.rsplit("/", 1)[0] + "/postgres"
        conn = await _connect(url)
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname LIKE $1 AND pid <> pg_backend_pid()",
                self.database_prefix + "%",
            )
        finally:
            await conn.close()
        return len(rows)

    def logs(self) -> dict[str, str]:
        return {f"{p.spec}:{p.grpc_port}": p.logs.read_text(errors="replace") for p in self.all()}


@asynccontextmanager
async def running(
    broker_url: str, postgres_template: str, data_dir: Path, replicas: int = 2, **settings: str
) -> AsyncIterator[System]:
    """Start the system; yield it once every process is ready; on the way out SIGTERM every
    process (then SIGKILL what is left)."""
    env = environment(broker_url, postgres_template, data_dir, ADMIN, **settings)
    processes = {
        name: [
            Served(name, env, data_dir / f"{name}-{i}.log")
            for i in range(replicas if name in CONSUMERS else 1)
        ]
        for name in ordered_names()
    }
    system = System(processes, postgres_template)
    targets = grpc_targets(system.all())
    for process in system.all():
        process.env = {**env, "MERCATO_GRPC_TARGETS": targets}
    try:
        for replica in range(replicas):
            for wave in in_waves(r[replica] for r in processes.values() if len(r) > replica):
                await asyncio.gather(*(_start(p) for p in wave))
        yield system
    finally:
        stopping = [p for p in system.all() if p.proc is not None and p.proc.poll() is None]
        await asyncio.gather(*(_stop(p) for p in stopping), return_exceptions=True)


FULL = "too many clients"  # PostgreSQL's answer when it has no connection to spare


async def _connect(url: str) -> Any:
    """An asyncpg connection; while the shared server has none to spare, ask again."""
    for _ in range(60):
        try:
            return await asyncpg.connect(url)
        except asyncpg.TooManyConnectionsError:
            await asyncio.sleep(0.5)
    return await asyncpg.connect(url)


async def _start(process: Served) -> None:
    """Start until /readyz says ok. A process that exits because the shared PostgreSQL
    server had no connection to spare (other test runs hold them) is started again, as a
    supervisor would; any other exit fails."""
    for attempt in range(5):
        process.start()
        try:
            await process.ready()
            return
        except AssertionError:
            if attempt == 4 or FULL not in process.logs.read_text(errors="replace")[-4000:]:
                raise
        await asyncio.sleep(2)


async def _stop(process: Served) -> None:
    try:
        await process.stop()
    finally:
        process.kill()
