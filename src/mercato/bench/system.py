"""The system under test, started in a process of its own so that the load generator does not
share its event loop: ``mercato up`` embedded (SQLite, in-memory bus) or ``mercato up
--processes`` on RabbitMQ, NATS or Kafka and PostgreSQL, with fresh databases (and, on RabbitMQ,
a fresh virtual host; on Kafka, a Tansu broker of the run's own) that are dropped afterwards."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg  # type: ignore[import-untyped]

from mercato.bench.client import FAILURES, Client
from mercato.services import ordered_names, process_plan

BROKERS = {
    "memory": "memory://",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "nats": "nats://127.0.0.1:4222",
    "kafka": "",  # the run starts its own Tansu (bench/tansu.py) and sets the URL
}
POSTGRES = "postgresql://root@127.0.0.1:5432"
ADMIN_EMAIL = "operator@bench.example"
ADMIN_PASSWORD = "Bench-admin-7Kq2-Zx9w-Lm4t"


class SystemFailed(RuntimeError):
    pass


EPHEMERAL_FLOOR = 32768


def free_port(span: int = 1) -> int:
    """A port P with P…P+span-1 and P+1000…P+999+span free now (``up --processes`` takes
    P for the gateway, P+1… for the others, and +1000 for each one's gRPC)."""
    for _ in range(200):
        # Below Linux's ephemeral range (32768–60999): a port the OS hands out to outgoing
        # connections (the services' own, to PostgreSQL and the broker) could be taken between
        # this check and the service's bind, which once failed a run.
        base = random.randrange(EPHEMERAL_FLOOR // 2, EPHEMERAL_FLOOR - 1000 - span)
        if all(
            _free(p) for p in (*range(base, base + span), *range(base + 1000, base + 1000 + span))
        ):
            return base
    raise SystemFailed("no free range of ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def rabbitmq_vhost(name: str, create: bool) -> bool:
    """Create (or delete) a virtual host for the run, so nothing on the shared broker mixes
    with it; False when ``rabbitmqctl`` cannot (then the default vhost is used)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        return False
    steps = (
        [["add_vhost", name], ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]]
        if create
        else [["delete_vhost", name]]
    )
    for step in steps:
        done = subprocess.run([ctl, *step], capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            return False
    return True


async def drop_databases(prefix: str) -> None:
    """Drop the run's PostgreSQL databases (names starting with ``prefix``)."""
    conn = await asyncpg.connect(f"{POSTGRES}/postgres")
    try:
        rows = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", prefix + "%"
        )
        for row in rows:
            await conn.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class SystemUnderTest:
    """One run's system: ``start``, ``ready``, then ``stop`` (always, in a ``finally``)."""

    run_id: str
    broker: str
    database: str
    workdir: Path
    carrier_delay: str = "never"
    groups: tuple[str, ...] = ()  # `up --processes --group`: services sharing a process
    without: tuple[str, ...] = ()  # `up --without`: optional services left out
    private_webhook_targets: bool = False  # a webhook receiver on loopback (bench/webhooks)
    port: int = 0
    broker_url: str = ""
    vhost: str | None = None
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def processes(self) -> bool:
        return self.broker != "memory"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_prefix(self) -> str:
        return f"bench_{self.run_id}_"

    @property
    def topology(self) -> list[str]:
        """The processes and the services each runs (``catalog+cart``)."""
        if not self.processes:
            return ["+".join(ordered_names(self.without))]
        return ["+".join(names) for names in process_plan(self.groups, without=self.without)]

    @property
    def metrics_urls(self) -> list[str]:
        """One /metrics per process: the gateway's port, then port+1… in start order."""
        if not self.processes:
            return [f"{self.base_url}/metrics"]
        return [f"http://127.0.0.1:{self.port + i}/metrics" for i in range(len(self.topology))]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
        env |= {
            "MERCATO_BROKER_URL": self.broker_url,
            "MERCATO_DATA_DIR": str(self.workdir / "data"),
            "MERCATO_ADMIN_EMAIL": ADMIN_EMAIL,
            "MERCATO_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "MERCATO_CARRIER_DELAY": self.carrier_delay,
            "MERCATO_AUTH_RATE_LIMIT": "100000",
            "MERCATO_ACCESS_TOKEN_TTL": "7200",
            "MERCATO_DEMO_CATALOG": "0",
            "MERCATO_WDM_API": "1",
            "MERCATO_LOG_LEVEL": "warning",
            "MERCATO_LOG_FORMAT": "json",
        }
        if self.private_webhook_targets:
            env["MERCATO_WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "1"
        if self.broker == "kafka":
            env["MERCATO_KAFKA_IDEMPOTENCE"] = "0"  # Tansu has no idempotent producer
        if self.database == "postgres":
            env["MERCATO_DATABASE_URL"] = f"{POSTGRES}/{self.database_prefix}{{service}}"
        return env

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker_url = self.broker_url or BROKERS[self.broker]
        if self.broker == "rabbitmq":
            name = f"bench_{self.run_id}"
            if rabbitmq_vhost(name, create=True):
                self.vhost = name
                self.broker_url = f"amqp://guest:guest@127.0.0.1:5672/{name}"
            else:
                self.notes.append("rabbitmqctl unavailable: the run used the default vhost")
        self.port = free_port(len(ordered_names()) + 1)
        cmd = [sys.executable, "-m", "mercato", "up", "--port", str(self.port)]
        cmd += [f"--without={name}" for name in self.without]
        if self.processes:
            cmd += ["--processes", *(f"--group={group}" for group in self.groups)]
        else:
            cmd += ["--data-dir", str(self.workdir / "data")]
        self.log = (self.workdir / "system.log").open("wb")
        self.process = subprocess.Popen(
            cmd, env=self.environment(), stdout=self.log, stderr=subprocess.STDOUT
        )

    async def ready(self, timeout: float = 90) -> None:
        """Wait for /readyz on every process (the gateway's answers for the embedded one)."""
        urls = [u.removesuffix("/metrics") + "/readyz" for u in self.metrics_urls]
        deadline = time.monotonic() + timeout
        async with Client(timeout=2) as http:
            for url in urls:
                while True:
                    if self.process is not None and self.process.poll() is not None:
                        raise SystemFailed(
                            f"the system exited ({self.process.returncode}); {self.tail()}"
                        )
                    try:
                        if (await http.get(url)).status_code == 200:
                            break
                    except FAILURES:
                        pass
                    if time.monotonic() > deadline:
                        raise SystemFailed(f"{url} not ready within {timeout:.0f}s; {self.tail()}")
                    await asyncio.sleep(0.2)

    def tail(self, lines: int = 15) -> str:
        path = self.workdir / "system.log"
        if not path.exists():
            return "no log"
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return "log tail:\n" + "\n".join(text)

    async def stop(self, grace: float = 20) -> int | None:
        """SIGTERM, then SIGKILL after ``grace``; drop the run's databases and vhost."""
        code: int | None = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(self.process.wait, grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = await asyncio.to_thread(self.process.wait, 10)
                self.notes.append(f"the system did not stop within {grace:.0f}s: killed")
        if self.log is not None:
            self.log.close()
        if self.database == "postgres":
            await drop_databases(self.database_prefix)
        if self.vhost is not None:
            await asyncio.to_thread(rabbitmq_vhost, self.vhost, False)
        return code
