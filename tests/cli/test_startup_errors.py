"""A system that cannot start says why in one line, not with a traceback: a database or a
broker it cannot reach (`mercato serve`; `mercato up` starts the same way)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_catalog(tmp_path: Path, broker: str, database: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env |= {
        "MERCATO_BROKER_URL": broker,
        "MERCATO_DATABASE_URL": database,
        "MERCATO_DATA_DIR": str(tmp_path),
        "MERCATO_ADMIN_EMAIL": "admin@example.com",
        "MERCATO_ADMIN_PASSWORD": "Vx9!qLr#2mPzT7wK",
    }
    cmd = [sys.executable, "-m", "mercato", "serve", "catalog", "--port", str(closed_port())]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["database", "broker", "kafka"])
def test_an_unreachable_dependency_is_one_clear_line(tmp_path: Path, kind: str) -> None:
    port = closed_port()
    if kind == "database":
        broker, database = "memory://", f"postgresql://root:secret@127.0.0.1:{port}/x_{{service}}"
        expected = f"catalog: cannot open or migrate its database postgresql+asyncpg://root:***@127.0.0.1:{port}/x_catalog"
    elif kind == "kafka":
        broker, database = f"kafka://127.0.0.1:{port}", f"sqlite:///{tmp_path}/{{service}}.db"
        expected = f"cannot reach Kafka at 127.0.0.1:{port}"
    else:
        broker, database = (
            f"amqp://guest:guest@127.0.0.1:{port}/",
            f"sqlite:///{tmp_path}/{{service}}.db",
        )
        expected = f"cannot reach RabbitMQ at amqp://guest@127.0.0.1:{port}/"
    done = serve_catalog(tmp_path, broker, database)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"mercato: {expected}" in output, output
    assert "Traceback" not in output and "secret" not in output, output
