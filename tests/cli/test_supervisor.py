"""The supervisor's rules without processes: its back-off, its status file, ``mercato ps``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from mercato.cli.main import app
from mercato.cli.status import ProcessStatus, read_status, status_path, write_status
from mercato.cli.supervisor import Child, RestartPolicy, Supervisor, exit_text
from mercato.platform.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MERCATO_"):
            monkeypatch.delenv(name)


def test_the_back_off_doubles_from_the_first_delay_up_to_the_longest() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=3, limit=7, window=60)
    assert [policy.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 3, 3, 3]


def test_the_limit_th_exit_within_the_window_gives_up() -> None:
    policy = RestartPolicy(first_delay=0.5, max_delay=30, limit=5, window=60)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1, 2, 4, None]
    assert RestartPolicy(limit=1).delay(1) is None, "a limit of 1: no restart at all"


def test_exits_older_than_the_window_no_longer_count() -> None:
    policy = RestartPolicy(window=60)
    crashes = [0.0, 10.0, 50.0]
    assert policy.recent(crashes, now=65.0) == [10.0, 50.0]
    # A child that ran a whole window since its last exit starts over at the first delay.
    assert policy.recent(crashes, now=110.0) == []
    assert policy.delay(len([*policy.recent(crashes, 110.0), 110.0])) == policy.first_delay


def test_an_exit_reads_as_its_code_or_its_signal() -> None:
    assert exit_text(3) == "exit 3"
    assert exit_text(0) == "exit 0"
    assert exit_text(-signal.SIGKILL) == "SIGKILL"


def test_the_restart_settings_have_defaults_and_refuse_bad_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert RestartPolicy.of(load_settings()) == RestartPolicy(0.5, 30, 5, 60)
    monkeypatch.setenv("MERCATO_RESTART_DELAY", "5")
    monkeypatch.setenv("MERCATO_RESTART_DELAY_MAX", "2")
    with pytest.raises(ConfigError, match=r"MERCATO_RESTART_DELAY_MAX: .*≥ MERCATO_RESTART_DELAY"):
        load_settings()
    monkeypatch.delenv("MERCATO_RESTART_DELAY_MAX")
    monkeypatch.setenv("MERCATO_RESTART_LIMIT", "0")
    with pytest.raises(ConfigError, match="MERCATO_RESTART_LIMIT"):
        load_settings()


def processes(now: float) -> list[ProcessStatus]:
    return [
        ProcessStatus("catalog+cart", 1, 1, 101, "ready", started=now - 125),
        ProcessStatus(
            "payment", 1, 2, 102, "ready", restarts=1, started=now - 3, last_exit="SIGKILL"
        ),
        ProcessStatus("payment", 2, 2, None, "restarting", restarts=2, last_exit="exit 3"),
    ]


def test_the_status_file_is_replaced_whole_and_reads_back(tmp_path: Path) -> None:
    path = status_path(tmp_path)
    write_status(path, 4321, processes(1000.0))
    write_status(path, 4321, processes(2000.0))
    assert read_status(path.read_text()) == (4321, processes(2000.0))
    assert [p.name for p in tmp_path.iterdir()] == ["processes.json"], "no temporary file left"


def test_a_data_directory_the_supervisor_makes_is_its_owners_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_status(status_path(data), 4321, processes(0.0))
    assert data.stat().st_mode & 0o777 == 0o700


def ps(*args: str) -> tuple[int, str]:
    saved = structlog.get_config()
    result = CliRunner().invoke(app, ["ps", *args])
    structlog.configure(**saved)  # the command set logging up onto CliRunner's closed stderr
    return result.exit_code, " ".join(result.output.split())


def test_ps_shows_each_process_with_its_state_restarts_uptime_and_last_exit(
    tmp_path: Path,
) -> None:
    write_status(status_path(tmp_path), os.getpid(), processes(time.time()))
    code, shown = ps("--data-dir", str(tmp_path))
    assert code == 0, shown
    assert "process replica pid state restarts uptime last exit" in shown
    assert re.search(r"catalog\+cart 1/1 101 ready 0 2m0[5-9]s -", shown), shown
    assert re.search(r"payment 1/2 102 ready 1 [3-9]s SIGKILL", shown), shown
    assert "payment 2/2 - restarting 2 - exit 3" in shown
    assert "supervisor" not in shown
    code, raw = ps("--data-dir", str(tmp_path), "--json")
    assert json.loads(raw)["processes"][2]["state"] == "restarting"


def test_ps_says_when_the_supervisor_is_gone_or_never_ran(tmp_path: Path) -> None:
    assert ps("--data-dir", str(tmp_path)) == (
        1,
        f"error: no {status_path(tmp_path)}: `mercato up --processes` has not run with this "
        "data directory",
    )
    write_status(status_path(tmp_path), 2**22 + 1, processes(0.0))  # above Linux's pid_max
    code, shown = ps("--data-dir", str(tmp_path))
    assert code == 0 and f"the supervisor (pid {2**22 + 1}) is gone: its last status" in shown
    write_status(status_path(tmp_path), None, processes(0.0))
    code, shown = ps("--data-dir", str(tmp_path))
    assert code == 0 and "the supervisor has stopped: its last status" in shown


def test_a_second_supervisor_on_one_data_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write_status(status_path(tmp_path), os.getppid(), processes(0.0))  # a live process
    monkeypatch.setenv("MERCATO_BROKER_URL", "amqp://guest:guest@127.0.0.1:1/")
    saved = structlog.get_config()
    result = CliRunner().invoke(app, ["up", "--processes", "--data-dir", str(tmp_path)])
    structlog.configure(**saved)
    assert result.exit_code == 2
    assert f"another supervisor (pid {os.getppid()})" in " ".join(result.output.split())


async def test_the_processes_that_only_publish_start_once_every_consumer_is_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event published before its consumer's queue exists would never reach it: identity
    (its first admin) and the gateway wait for the consumers."""
    started: list[str] = []
    ready: set[str] = set()

    def start(child: Child) -> None:
        started.append(child.label)
        child.proc = subprocess.Popen(["sleep", "30"])
        child.status.state = "starting"

    async def answer(_http: object, url: str) -> bool:
        return url in ready

    monkeypatch.setattr(Child, "start", start)
    monkeypatch.setattr("mercato.cli.supervisor._ready", answer)

    def child(name: str, consumes: bool) -> Child:
        status = ProcessStatus(name, 1, 1, None, "starting" if consumes else "waiting")
        return Child((name,), status, {}, name, consumes=consumes)

    monkeypatch.setenv("MERCATO_DATA_DIR", str(tmp_path))
    children = [child("identity", False), child("order", True), child("payment", True)]
    supervisor = Supervisor(load_settings(), children)
    for c in children:
        if c.consumes:
            c.start()
    try:
        ready.add("order")
        await supervisor._look(None)  # type: ignore[arg-type]
        assert started == ["order", "payment"] and children[0].status.state == "waiting"
        ready.add("payment")
        await supervisor._look(None)  # type: ignore[arg-type]
        assert started == ["order", "payment", "identity"]
        assert children[0].status.state == "starting"
    finally:
        for c in children:
            if c.proc is not None:
                c.proc.kill()
                c.proc.wait()
