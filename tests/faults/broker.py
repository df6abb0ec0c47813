"""A RabbitMQ node of the fault suite's own, on ports of its own, so that a case can restart
the broker without touching the shared one on 5672.

The node runs from RabbitMQ's own scripts (``/usr/lib/rabbitmq/bin``: the ``/usr/sbin``
wrappers switch to the ``rabbitmq`` user and its files) with every file it writes in a
directory of the test session, no plugins, and the Erlang cookie of this user's home, which
``rabbitmqctl`` run the same way finds too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path("/usr/lib/rabbitmq/bin")


class NodeFailed(RuntimeError):
    pass


def script(name: str) -> str | None:
    """RabbitMQ's script ``name`` that runs as this user, if the machine has RabbitMQ."""
    own = SCRIPTS / name
    return str(own) if own.exists() else shutil.which(name)


@dataclass
class RabbitNode:
    """One node, ``name@localhost``, AMQP on ``port`` (127.0.0.1), distribution on port+1."""

    name: str
    port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def node(self) -> str:
        return f"{self.name}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def environment(self) -> dict[str, str]:
        self.home.mkdir(parents=True, exist_ok=True)
        config, plugins, env_file = (
            self.home / "rabbitmq.conf",
            self.home / "enabled_plugins",
            self.home / "rabbitmq-env.conf",
        )
        # guest may connect from 127.0.0.1 only by default: that is where the suite is.
        config.write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        plugins.write_text("[].\n")  # no management plugin: nothing listens on its port
        env_file.write_text("")  # not the machine's /etc/rabbitmq/rabbitmq-env.conf
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.port + 1),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_CONF_ENV_FILE": str(env_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_PID_FILE": str(self.home / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 120) -> None:
        server = script("rabbitmq-server")
        if server is None:
            raise NodeFailed("rabbitmq-server is not installed")
        out = (self.home / "server.out").open("ab")
        self.process = subprocess.Popen(
            [server], env=self.environment(), stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        deadline = time.monotonic() + timeout
        while self.ctl("await_startup", timeout=timeout).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise NodeFailed(f"{self.node} did not start: see {self.home}")
            time.sleep(0.5)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """``rabbitmqctl -n NODE ARGS`` (this node only, never the shared one)."""
        ctl = script("rabbitmqctl")
        assert ctl is not None
        return subprocess.run(
            [ctl, "-n", self.node, *args],
            env=self.environment(),
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def stop_app(self) -> None:
        """The broker stops (every connection closed, nothing accepted); the node stays."""
        self._must("stop_app")

    def start_app(self) -> None:
        self._must("start_app")
        self._must("await_startup")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.ctl("stop")
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def _must(self, *args: str) -> None:
        done = self.ctl(*args)
        if done.returncode != 0:
            raise NodeFailed(f"rabbitmqctl {' '.join(args)}: {done.stdout!r} {done.stderr!r}")
