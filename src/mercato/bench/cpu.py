"""Where the machine's CPU went during a scenario, read from ``/proc`` (Linux; elsewhere every
figure is None): the system under test (its process and every child: one per service with
``--processes``, also counted by service as ``system:NAME``), the broker's and the database
server's processes, and the bench itself."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
# Process names (/proc/<pid>/comm) of the servers the system runs on.
SERVERS = {"broker": ("beam.smp", "nats-server", "tansu"), "database": ("postgres",)}


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(name, parent pid, CPU seconds used) of a process, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return name, int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def _all() -> dict[int, tuple[str, int, float]]:
    found = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def _served(pid: int) -> str:
    """The service a `mercato serve NAME` process runs, else "main"."""
    try:
        args = (PROC / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return "main"
    if b"serve" in args and args.index(b"serve") + 1 < len(args):
        return args[args.index(b"serve") + 1].decode(errors="replace") or "main"
    return "main"


def _tree(root: int, processes: dict[int, tuple[str, int, float]]) -> set[int]:
    tree, grown = {root}, True
    while grown:
        more = {pid for pid, (_, parent, _) in processes.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    return tree & processes.keys()


def sample(system_pid: int | None) -> dict[str, float] | None:
    """CPU seconds used so far by each part (processes that ended since are not counted)."""
    processes = _all()
    if not processes:
        return None

    def used(pids: Iterable[int]) -> float:
        return sum(processes[p][2] for p in pids)

    parts = {"bench": used([os.getpid()])}
    if system_pid is not None:
        tree = _tree(system_pid, processes)
        parts["system"] = used(tree)
        for pid in tree:  # with --processes: one `mercato serve NAME` per service
            part = f"system:{_served(pid)}"
            parts[part] = parts.get(part, 0.0) + processes[pid][2]
    for part, names in SERVERS.items():
        parts[part] = used(p for p, (name, _, _) in processes.items() if name in names)
    return parts


def per_order(
    before: dict[str, float] | None, after: dict[str, float] | None, orders: int
) -> dict[str, float] | None:
    """Milliseconds of CPU per order, by part."""
    if before is None or after is None or orders == 0:
        return None
    return {k: 1000 * (after[k] - before[k]) / orders for k in after if k in before}
