"""The supervisor's status file, and ``mercato ps``, which shows it.

``mercato up --processes`` writes ``processes.json`` in the data directory whenever a process
changes state (written whole to a temporary file, then renamed over the old one, so a reader
never sees half of it); ``mercato ps`` reads it from another process.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from mercato.cli.common import fail, settings_or_exit
from mercato.platform.files import private_dir

STATUS_FILE = "processes.json"
# What a supervised process can be doing; "gave up" is final: the supervisor stops everything.
STATES = ("starting", "ready", "restarting", "stopped", "gave up")


@dataclass
class ProcessStatus:
    """One supervised process, as ``mercato ps`` shows it (times are Unix seconds)."""

    name: str  # its services, "catalog+cart" for a group
    replica: int  # 1…replicas
    replicas: int
    pid: int | None
    state: str
    restarts: int = 0
    started: float | None = None  # when its current run started
    last_exit: str | None = None  # "exit 3", "SIGKILL"

    def uptime(self, now: float) -> float | None:
        running = self.state in ("starting", "ready") and self.started is not None
        return now - self.started if running and self.started is not None else None


def status_path(data_dir: Path) -> Path:
    return data_dir / STATUS_FILE


def write_status(path: Path, supervisor: int | None, processes: list[ProcessStatus]) -> None:
    """Replace the status file in one rename (readers see the old file or the new one).
    ``supervisor``: the pid of the supervisor that writes it, None once it has stopped."""
    document = {
        "supervisor": supervisor,
        "written": time.time(),
        "processes": [asdict(p) for p in processes],
    }
    private_dir(path.parent)  # the supervisor may be the first to make the data directory
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=1)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_status(text: str) -> tuple[int | None, list[ProcessStatus]]:
    """(the running supervisor's pid or None, its processes) from the status file's text."""
    document: dict[str, Any] = json.loads(text)
    supervisor = document["supervisor"]
    processes = [ProcessStatus(**p) for p in document["processes"]]
    return None if supervisor is None else int(supervisor), processes


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def status_table(processes: list[ProcessStatus], now: float | None = None) -> str:
    """Plain text, one line a process, as wide as it needs (log files are no terminals)."""
    now = time.time() if now is None else now
    rows = [("process", "replica", "pid", "state", "restarts", "uptime", "last exit")]
    for p in processes:
        uptime = p.uptime(now)
        rows.append(
            (
                p.name,
                f"{p.replica}/{p.replicas}",
                str(p.pid or "-"),
                p.state,
                str(p.restarts),
                "-" if uptime is None else _duration(uptime),
                p.last_exit or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def ps(
    data_dir: Annotated[Path | None, typer.Option(help="The data directory of `up`")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The status file as it is")] = False,
) -> None:
    """The processes of `mercato up --processes`: state, pid, restarts, uptime, last exit."""
    settings = settings_or_exit(data_dir=data_dir)
    path = status_path(settings.data_dir)
    try:
        text = path.read_text()
        supervisor, processes = read_status(text)
    except FileNotFoundError:
        fail(f"no {path}: `mercato up --processes` has not run with this data directory", 1)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        fail(f"{path} cannot be read: {exc}", 1)
    if as_json:
        typer.echo(text)
        return
    typer.echo(status_table(processes))
    if supervisor is None:
        typer.echo("the supervisor has stopped: its last status")
    elif not alive(supervisor):
        typer.echo(f"the supervisor (pid {supervisor}) is gone: its last status")
