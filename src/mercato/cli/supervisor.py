"""``mercato up --processes``: one ``mercato serve`` child per process of the plan, kept running.

A child that exits when it was not asked to (a crash, a signal such as SIGKILL, or even exit 0)
is started again on the same ports after a back-off (``RestartPolicy``). One that exits
``MERCATO_RESTART_LIMIT`` times within ``MERCATO_RESTART_WINDOW`` seconds makes the supervisor
give up: it says which process and how it last exited, stops everything and exits 1. SIGTERM or
SIGINT stops every child (SIGTERM, up to 2.5 × ``MERCATO_SHUTDOWN_TIMEOUT`` + 5 s to drain,
then SIGKILL) and exits 0. Each change of state goes to the status file ``mercato ps`` reads.

The children that consume events start first; the others (identity, the gateway: they only
publish) once every consumer is ready. A consumer's queue exists from its first start on, and
an event published before it would never reach it: identity's first admin, for one, whom
notification must know to alert. (Within one process, the host does the same: its relays
start after every subscription.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import structlog

from mercato.bench.client import FAILURES, Client
from mercato.cli.common import console
from mercato.cli.status import ProcessStatus, status_path, status_table, write_status
from mercato.platform.settings import Settings
from mercato.platform.waits import within

log = structlog.get_logger(__name__)

TICK = 0.2  # seconds between looks at the children
# A child's stop is bounded in steps of MERCATO_SHUTDOWN_TIMEOUT (T): the batch in hand T,
# then gRPC's grace, the relay's end and its last round T/2 each (runtime/host.py). It gets
# STOP_TIMEOUTS × T + DRAIN_MARGIN seconds before SIGKILL.
STOP_TIMEOUTS = 2.5
DRAIN_MARGIN = 5.0


@dataclass(frozen=True)
class RestartPolicy:
    """How long a crashed child waits before it starts again, and when the supervisor gives up.

    The n-th crash within ``window`` seconds waits ``first_delay`` · 2ⁿ⁻¹ seconds, at most
    ``max_delay``; the ``limit``-th is the last: the supervisor gives up. A child that has
    run ``window`` seconds since its last crash starts over from ``first_delay``."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    limit: int = 5
    window: float = 60.0

    @classmethod
    def of(cls, settings: Settings) -> RestartPolicy:
        return cls(
            settings.restart_delay,
            settings.restart_delay_max,
            settings.restart_limit,
            settings.restart_window,
        )

    def recent(self, crashes: list[float], now: float) -> list[float]:
        """The crashes (monotonic times) that still count at ``now``."""
        return [t for t in crashes if now - t < self.window]

    def delay(self, recent_crashes: int) -> float | None:
        """Seconds to wait after the ``recent_crashes``-th crash in the window; None: give up."""
        if recent_crashes >= self.limit:
            return None
        return min(self.first_delay * 2.0 ** min(recent_crashes - 1, 64), self.max_delay)


@dataclass
class Child:
    """One process of the plan and what the supervisor knows of it."""

    names: tuple[str, ...]
    status: ProcessStatus
    env: dict[str, str]
    ready_url: str
    proc: subprocess.Popen[bytes] | None = None
    consumes: bool = True  # False: publishes only, started once every consumer is ready
    crashes: list[float] = field(default_factory=list)  # monotonic times, within the window
    restart_at: float = 0.0

    @property
    def label(self) -> str:
        s = self.status
        return s.name if s.replicas == 1 else f"{s.name}#{s.replica}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "mercato", "serve", *self.names]
        # A group of its own: a Ctrl-C at the terminal reaches the supervisor alone, which
        # stops the children itself (and knows their exits were asked for).
        self.proc = subprocess.Popen(cmd, env=self.env, process_group=0)
        self.status.pid, self.status.state = self.proc.pid, "starting"
        self.status.started = time.time()


def exit_text(returncode: int) -> str:
    """``exit 3``, or the signal that ended the process (``SIGKILL``)."""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
        return f"signal {-returncode}"
    return f"exit {returncode}"


class Supervisor:
    def __init__(self, settings: Settings, children: list[Child]) -> None:
        self.settings = settings
        self.children = children
        self.policy = RestartPolicy.of(settings)
        self.path = status_path(settings.data_dir)
        self.gave_up: Child | None = None
        self._stop = asyncio.Event()

    async def run(self) -> int:
        """Supervise until a signal (0) or until it gives up on a child (1)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        try:  # whatever happens here, the children are stopped
            for child in self.children:
                if child.consumes:
                    child.start()
                    self._changed(child)
            self._write()
            async with Client(timeout=1) as http:
                while not self._stop.is_set() and self.gave_up is None:
                    await self._look(http)
                    with contextlib.suppress(TimeoutError):
                        await within(TICK, self._stop.wait())
        finally:
            await self._stop_all()
        return 1 if self.gave_up is not None else 0

    async def _look(self, http: Client) -> None:
        now = time.monotonic()
        changed = False
        for child in self.children:
            if child.proc is None:  # a publisher, waiting for the consumers
                continue
            state = child.status.state
            if state in ("starting", "ready") and child.proc.poll() is not None:
                self._exited(child, now)
                changed = True
                if self.gave_up is not None:
                    break
            elif state == "restarting" and now >= child.restart_at:
                child.status.restarts += 1
                child.start()
                self._changed(child)
                changed = True
        starting = [c for c in self.children if c.status.state == "starting"]
        answers = await asyncio.gather(*(_ready(http, c.ready_url) for c in starting))
        for child, ready in zip(starting, answers, strict=True):
            if ready and child.status.state == "starting":
                child.status.state = "ready"
                self._changed(child)
                changed = True
        consumers = [c for c in self.children if c.consumes]
        if all(c.status.state == "ready" for c in consumers):
            for child in self.children:
                if child.proc is None:
                    child.start()
                    self._changed(child)
                    changed = True
        if changed:
            self._write()
            if all(c.status.state == "ready" for c in self.children):
                console_table(self.children)

    def _exited(self, child: Child, now: float) -> None:
        assert child.proc is not None and child.proc.returncode is not None
        child.status.last_exit = exit_text(child.proc.returncode)
        child.crashes = [*self.policy.recent(child.crashes, now), now]
        wait = self.policy.delay(len(child.crashes))
        if wait is None:
            child.status.state = "gave up"
            self.gave_up = child
            log.error(
                "gave up on a process that keeps exiting: stopping everything",
                process=child.label,
                exits=len(child.crashes),
                window=self.policy.window,
                last_exit=child.status.last_exit,
            )
        else:
            child.status.state, child.restart_at = "restarting", now + wait
            self._changed(child, restart_in=wait)

    def _changed(self, child: Child, **more: object) -> None:
        s = child.status
        log.info(
            "process " + s.state,
            process=child.label,
            pid=s.pid,
            restarts=s.restarts,
            last_exit=s.last_exit,
            **{k: v for k, v in more.items() if v is not None},
        )

    def _write(self, running: bool = True) -> None:
        try:
            supervisor = os.getpid() if running else None
            write_status(self.path, supervisor, [c.status for c in self.children])
        except OSError as exc:  # ps goes without; the processes do not
            log.warning("cannot write the status file", path=str(self.path), error=str(exc))

    async def _stop_all(self) -> None:
        """SIGTERM every running child, wait for them (bounded), SIGKILL what is left."""
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            child.proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUTS * self.settings.shutdown_timeout + DRAIN_MARGIN
        while any(c.proc.poll() is None for c in running if c.proc is not None):
            if time.monotonic() > deadline:
                for child in running:
                    if child.proc is not None and child.proc.poll() is None:
                        log.warning("process did not stop in time: killed", process=child.label)
                        child.proc.kill()
                        await asyncio.to_thread(child.proc.wait)
                break
            await asyncio.sleep(0.05)
        for child in self.children:
            if child.status.state != "gave up":
                child.status.state = "stopped"
            if child in running and child.proc is not None:
                child.status.last_exit = exit_text(child.proc.returncode or 0)
        self._write(running=False)
        console_table(self.children)


async def _ready(http: Client, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except FAILURES:
        return False


def console_table(children: list[Child]) -> None:
    console.print(
        status_table([c.status for c in children]), markup=False, highlight=False, soft_wrap=True
    )
