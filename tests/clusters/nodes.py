"""Three-node broker clusters of the tests' own, on local ports in a temporary directory: a NATS
JetStream cluster and a RabbitMQ cluster. Each node is a process group of its own, killed by its
id (never by name) when the test ends, whatever happened; the shared brokers on 4222 and 5672
are never touched (the RabbitMQ nodes have their own names, ports, data, configuration, plugin
list and Erlang cookie)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
# The tests' ports (a range no other test uses): client, cluster route and monitoring per node.
NATS_PORTS = [(23101 + i, 23111 + i, 23121 + i) for i in range(3)]
# AMQP and Erlang distribution per node; the command-line tools' distribution ports after.
RABBITMQ_PORTS = [(23301 + i, 23311 + i) for i in range(3)]
RABBITMQ_CTL_PORTS = (23500, 23549)


def missing(what: str) -> None:
    """Skip, or fail where CI says every service must be there."""
    if os.environ.get("MERCATO_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{what} (MERCATO_REQUIRE_SERVICES=1)")
    pytest.skip(what)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Node:
    """One broker node: a process group started with ``command``, killed by its id."""

    def __init__(self, name: str, port: int, command: list[str], env: dict[str, str], log: Path):
        self.name, self.port, self.command, self.env, self.log = name, port, command, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if _listening(self.port):
            raise RuntimeError(f"port {self.port} is taken: a node of an earlier run left behind?")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        """SIGKILL, the node's whole process group (the Erlang VM under its start script)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def _until(what: str, check: object, timeout: float, nodes: list[Node]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)  # type: ignore[arg-type]
        if result:
            return
        dead = [n.name for n in nodes if n.process is not None and not n.alive]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(f"--- {n.name}\n{n.log.read_text()[-1500:]}" for n in nodes)
            raise RuntimeError(f"{what}: not within {timeout:.0f}s (exited: {dead})\n{logs}")
        await asyncio.sleep(0.3)


class NatsCluster:
    """Three JetStream servers routed to each other (``mt1``…``mt3``)."""

    def __init__(self, root: Path):
        if not Path(NATS_SERVER).exists():
            missing(f"nats-server is not installed (looked for {NATS_SERVER})")
        routes = ",".join(f"nats://127.0.0.1:{route}" for _, route, _ in NATS_PORTS)
        self.nodes = []
        for i, (client, route, monitor) in enumerate(NATS_PORTS, 1):
            store = root / f"nats{i}"
            store.mkdir(parents=True)
            command = [
                NATS_SERVER, "-js", "-sd", str(store), "-n", f"mt{i}", "-a", "127.0.0.1",
                "-p", str(client), "-m", str(monitor), "--cluster_name", "mercato-test",
                "--cluster", f"nats://127.0.0.1:{route}", "--routes", routes,
            ]  # fmt: skip
            self.nodes.append(Node(f"mt{i}", client, command, dict(os.environ), store / "log"))

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{n.port}" for n in self.nodes)

    async def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node, (_, _, monitor) in zip(self.nodes, NATS_PORTS, strict=True):
            await self.healthy(node, monitor)

    async def healthy(self, node: Node, monitor: int) -> None:
        """Until the server's /healthz says JetStream is current (a meta leader, caught up)."""

        def check() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", monitor), 1) as s:
                    s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                    answer = s.makefile("rb").read().decode()
            except OSError:
                return False
            return answer.startswith("HTTP/1.0 200") or answer.startswith("HTTP/1.1 200")

        await _until(f"NATS {node.name} healthy", check, 60, self.nodes)

    async def restart(self, node: Node) -> None:
        node.start()
        await self.healthy(node, NATS_PORTS[self.nodes.index(node)][2])

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


class RabbitCluster:
    """Three RabbitMQ nodes (``mt1@localhost``…), the second and third joined to the first."""

    def __init__(self, root: Path):
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            missing(f"RabbitMQ is not installed (looked for {RABBITMQ_BIN})")
        home = root / "home"  # an Erlang cookie of the cluster's own
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex().upper())
        cookie.chmod(0o400)
        self.base = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")},
            "HOME": str(home),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_CTL_DIST_PORT_MIN": str(RABBITMQ_CTL_PORTS[0]),
            "RABBITMQ_CTL_DIST_PORT_MAX": str(RABBITMQ_CTL_PORTS[1]),
        }
        self.nodes = []
        for i, (amqp, dist) in enumerate(RABBITMQ_PORTS, 1):
            data = root / f"rabbit{i}"
            data.mkdir()
            (data / "enabled_plugins").write_text("[].\n")  # no management, no Prometheus port
            (data / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{amqp}\n")
            (data / "rabbitmq-env.conf").write_text("")  # not the shared node's
            env = self.base | {
                "RABBITMQ_NODENAME": f"mt{i}@localhost",
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(amqp),
                "RABBITMQ_DIST_PORT": str(dist),
                "RABBITMQ_MNESIA_BASE": str(data / "mnesia"),
                "RABBITMQ_LOG_BASE": str(data / "log"),
                "RABBITMQ_CONFIG_FILE": str(data / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(data / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": str(data / "rabbitmq-env.conf"),
                "RABBITMQ_PID_FILE": str(data / "pid"),
            }
            command = [str(RABBITMQ_BIN / "rabbitmq-server")]
            self.nodes.append(Node(f"mt{i}@localhost", amqp, command, env, data / "out.log"))

    @property
    def url(self) -> str:
        return ",".join(f"amqp://guest:guest@127.0.0.1:{n.port}/" for n in self.nodes)

    def ctl(self, node: Node, *args: str, tool: str = "rabbitmqctl") -> str:
        done = subprocess.run(
            [str(RABBITMQ_BIN / tool), "-n", node.name, "-q", *args],
            env=self.base, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} on {node.name}: {done.stderr.strip()}")
        return done.stdout

    async def start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            await _until(f"RabbitMQ {node.name} up", lambda n=node: _listening(n.port), 120,
                         self.nodes)  # fmt: skip
        first = self.nodes[0]
        for node in self.nodes[1:]:
            for step in (["stop_app"], ["join_cluster", first.name], ["start_app"]):
                await asyncio.to_thread(self.ctl, node, *step)
        running = json.loads(self.ctl(first, "cluster_status", "--formatter", "json"))
        assert sorted(running["running_nodes"]) == sorted(n.name for n in self.nodes), running

    async def restart(self, node: Node) -> None:
        """Start a killed node again: it rejoins the cluster from its own data."""
        node.start()
        await _until(f"RabbitMQ {node.name} back", lambda: _listening(node.port), 120, self.nodes)

    def members(self) -> dict[str, list[str]]:
        """Each queue's type and the nodes holding a replica of it."""
        args = ("list_queues", "name", "type", "members", "--formatter", "json")
        rows = json.loads(self.ctl(self.nodes[0], *args))
        return {f"{r['name']} ({r['type']})": sorted(r["members"]) for r in rows}

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
