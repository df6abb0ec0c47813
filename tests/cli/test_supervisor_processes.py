"""``mercato up --processes`` as an operator runs it: replicas on fresh PostgreSQL databases
come up, a SIGKILLed child comes back by itself, a child that keeps crashing makes the
supervisor give up loudly, and SIGTERM stops everything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mercato.bench.client import FAILURES, Client
from mercato.bench.system import free_port, rabbitmq_vhost
from mercato.cli.status import ProcessStatus, alive, read_status, status_path
from mercato.services import ordered_names
from tests.cli.test_startup_errors import closed_port
from tests.conftest import eventually
from tests.demo.probe import ROOT, drop_namespace, mercato

pytestmark = pytest.mark.slow


class Up:
    """One ``python -m mercato up --processes ARGS`` process, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], data_dir: Path):
        self.args, self.data_dir = args, data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
        self.env |= {"MERCATO_DATA_DIR": str(data_dir), "MERCATO_LOG_FORMAT": "json", **env}
        self.port = free_port(len(ordered_names()) + 4)
        self.logs = data_dir.parent / f"{data_dir.name}-up.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mercato", "up", "--processes", "--port", str(self.port)]
        with self.logs.open("ab") as out:
            self.proc = subprocess.Popen(
                [*cmd, *self.args], env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def status(self) -> list[ProcessStatus]:
        try:
            return read_status(status_path(self.data_dir).read_text())[1]
        except FileNotFoundError:
            return []

    async def until(self, check: Callable[[list[ProcessStatus]], bool], timeout: float) -> None:
        def seen() -> bool:
            assert self.proc is not None
            assert self.proc.poll() is None, f"the supervisor exited:\n{self.output()}"
            return check(self.status())

        await eventually(seen, timeout=timeout, interval=0.2)

    async def exit_code(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout)

    def output(self) -> str:
        return self.logs.read_text(errors="replace")

    def kill(self) -> None:
        """What a failed test leaves: the supervisor and its children (groups of their own)."""
        for process in self.status():
            if process.pid is not None and alive(process.pid):
                os.kill(process.pid, signal.SIGKILL)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
async def broker(rabbitmq_url: str) -> AsyncIterator[str]:
    """A RabbitMQ virtual host of the test's own (the default one, cleaned after, without
    rabbitmqctl)."""
    name = f"mercato_t{uuid.uuid4().hex[:10]}"
    made = await asyncio.to_thread(rabbitmq_vhost, name, True)
    yield f"{rabbitmq_url.rstrip('/')}/{name}" if made else rabbitmq_url
    if made:
        await asyncio.to_thread(rabbitmq_vhost, name, False)
    else:
        await drop_namespace(rabbitmq_url, "mercato", ordered_names())


ADMIN = {"email": "admin@example.com", "password": "Vx9!qLr#2mPzT7wK"}


@pytest.mark.postgres
@pytest.mark.rabbitmq
async def test_replicas_on_fresh_databases_come_up_heal_a_sigkill_and_stop_on_sigterm(
    postgres_template: str, broker: str, tmp_path: Path
) -> None:
    up = Up(
        ["--replicas", "inventory=2", "--replicas", "payment=2"],
        {
            "MERCATO_BROKER_URL": broker,
            "MERCATO_DATABASE_URL": postgres_template,
            "MERCATO_DEMO_CATALOG": "0",
            "MERCATO_ADMIN_EMAIL": ADMIN["email"],
            "MERCATO_ADMIN_PASSWORD": ADMIN["password"],
        },
        tmp_path / "data",
    )
    try:
        up.start()
        count = len(ordered_names()) + 2  # a process per service, two more replicas
        # Ten or so processes importing everything at once on two busy cores take a while.
        await up.until(lambda ps: len(ps) == count and all(p.state == "ready" for p in ps), 240)
        assert all(p.restarts == 0 for p in up.status()), up.output()
        ports = [up.port + i for i in range(count)]  # the gateway's, then one each for the others
        async with Client(timeout=5) as http:
            for port in ports:
                answer = await http.get(f"http://127.0.0.1:{port}/readyz")
                assert answer.status_code == 200 and answer.json()["status"] == "ok", port
            # identity (it only publishes) started once every consumer was ready: the admin it
            # made at its start reached notification, whose welcome is in the admin's inbox.
            base = f"http://127.0.0.1:{up.port}"
            login = await http.post(f"{base}/api/v1/auth/login", json=ADMIN)
            admin = {"Authorization": f"Bearer {login.json()['accessToken']}"}

            async def welcomed() -> bool:
                inbox = await http.get(f"{base}/api/v1/notifications", headers=admin)
                return any(n["kind"] == "welcome" for n in inbox.json()["items"])

            await eventually(welcomed, timeout=30)

        victim = next(p for p in up.status() if p.name == "payment" and p.replica == 2)
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)

        def back(ps: list[ProcessStatus]) -> bool:
            p = next(p for p in ps if p.name == "payment" and p.replica == 2)
            return p.state == "ready" and p.pid != victim.pid

        await up.until(back, 120)
        again = next(p for p in up.status() if p.name == "payment" and p.replica == 2)
        assert again.restarts == 1 and again.last_exit == "SIGKILL"
        assert not alive(victim.pid)
        async with Client(timeout=5) as http:
            assert await _ready(http, ports) == ports
        code, shown = await mercato("ps", "--data-dir", str(up.data_dir), env={})
        assert code == 0, shown
        assert f"payment 2/2 {again.pid} ready 1" in " ".join(shown.split()), shown

        assert up.proc is not None
        up.proc.send_signal(signal.SIGTERM)
        assert await up.exit_code() == 0, up.output()
        assert all(p.state == "stopped" for p in up.status()), up.status()
        assert read_status(status_path(up.data_dir).read_text())[0] is None
        assert not any(alive(p.pid) for p in up.status() if p.pid is not None)
        assert "Traceback" not in up.output()
    finally:
        up.kill()


async def _ready(http: Client, ports: list[int]) -> list[int]:
    ready = []
    for port in ports:
        try:
            if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                ready.append(port)
        except FAILURES:
            pass
    return ready


def crashing(data_dir: Path, **settings: str) -> Up:
    """Every service in one process, on a database that is not there: it exits 3 at once."""
    return Up(
        ["--group", ",".join(ordered_names())],
        {
            "MERCATO_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed_port()}/",
            "MERCATO_DATABASE_URL": f"postgresql://root@127.0.0.1:{closed_port()}/x_{{service}}",
            **{f"MERCATO_{k.upper()}": v for k, v in settings.items()},
        },
        data_dir,
    )


async def test_a_child_that_keeps_crashing_makes_the_supervisor_give_up_loudly(
    tmp_path: Path,
) -> None:
    up = crashing(tmp_path / "data", restart_delay="0.1", restart_limit="3")
    try:
        up.start()
        assert await up.exit_code(timeout=120) == 1, up.output()
        [process] = up.status()
        assert (process.state, process.restarts, process.last_exit) == ("gave up", 2, "exit 3")
        # The terminal wraps the long process name anywhere: compare without the whitespace.
        said = "".join(up.output().split())
        expected = f"error: {process.name} exited 3 times within 60 s (last: exit 3): gave up"
        assert "".join(expected.split()) in said
        assert "gaveuponaprocessthatkeepsexiting" in said
    finally:
        up.kill()


async def test_sigterm_while_a_child_waits_to_restart_stops_at_once_and_exits_0(
    tmp_path: Path,
) -> None:
    up = crashing(tmp_path / "data", restart_delay="60", restart_delay_max="60")
    try:
        up.start()
        await up.until(lambda ps: bool(ps) and ps[0].state == "restarting", 60)
        assert up.proc is not None
        up.proc.send_signal(signal.SIGTERM)
        assert await up.exit_code(timeout=20) == 0, up.output()
        [process] = up.status()
        assert (process.state, process.restarts, process.last_exit) == ("stopped", 0, "exit 3")
    finally:
        up.kill()
