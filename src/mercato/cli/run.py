"""``mercato up`` (everything) and ``mercato serve SERVICE…`` (some services, one process)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.cli.common import console, fail, settings_or_exit
from mercato.cli.status import ProcessStatus, alive, read_status, status_path
from mercato.cli.supervisor import Child, Supervisor
from mercato.platform import tracing
from mercato.platform.runtime import heap
from mercato.platform.runtime.host import StartupError
from mercato.platform.runtime.service import Service
from mercato.platform.runtime.system import System, create_app
from mercato.platform.settings import Settings, parse_targets
from mercato.services import (
    OPTIONAL,
    SERVICES,
    BadTopology,
    UnknownService,
    all_services,
    consumes_events,
    load_service,
    process_plan,
)


def _run_http(system: System, settings: Settings) -> None:
    # Tracing only if the OTEL_* variables ask for it (mercato.platform.tracing).
    try:
        tracing.configure()
    except ValueError as exc:  # an exporter or protocol Mercato does not speak
        fail(str(exc))
    try:
        _Server(http_config(_plain_startup_errors(create_app(system)), settings)).run()
    finally:
        tracing.shutdown()  # the spans not yet exported go now


def http_config(app: ASGIApp, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings. The client's address is the connection's peer unless the peer is
    one of ``MERCATO_TRUSTED_PROXIES`` (none by default): only then is ``X-Forwarded-For``
    believed (the login limits count per address). No ``Server`` header."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        server_header=False,
    )


def _plain_startup_errors(app: ASGIApp) -> ASGIApp:
    """uvicorn prints what a failed start-up reports: the traceback Starlette hands it, or,
    for a StartupError (an unreachable database or broker…), the one line that says why."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)  # sent below, once it is known why
            else:
                await send(message)

        try:
            await app(scope, receive, hold)
        except StartupError as error:
            await send({"type": "lifespan.startup.failed", "message": f"mercato: {error}"})
            raise
        except BaseException:
            for message in held:
                await send(message)
            raise
        for message in held:
            await send(message)

    return serve


class _Server(uvicorn.Server):
    """uvicorn raises SIGTERM/SIGINT again once it has shut down, so the process would die of
    the signal (exit -15) although it drained cleanly: a drained stop exits 0 instead."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        heap.settle()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def up(
    port: Annotated[
        int | None, typer.Option(help="HTTP port of the gateway [default: 8000]")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where SQLite files and keys live")] = None,
    processes: Annotated[
        bool, typer.Option("--processes", help="One process per service on the configured broker")
    ] = False,
    replicas: Annotated[
        list[str] | None, typer.Option(help="SERVICE=N: run N competing replicas of SERVICE")
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            help="SERVICE,SERVICE…: these services share one process (with --processes); "
            "repeat for several groups"
        ),
    ] = None,
    without: Annotated[
        list[str] | None,
        typer.Option(help=f"SERVICE: leave it out (one of {', '.join(OPTIONAL)}); repeatable"),
    ] = None,
) -> None:
    """Start the whole system: embedded in one process (default), or one process per service
    (or per group of services)."""
    settings = settings_or_exit(port=port, data_dir=data_dir)
    left_out = without or []
    try:
        if processes:
            plan = process_plan(group or [], _parse_replicas(replicas or []), left_out)
        else:
            services = all_services(left_out)
    except BadTopology as exc:
        fail(str(exc))
    if processes:
        _supervise(settings, plan)
        return
    if replicas or group:
        fail("--replicas and --group need --processes")
    console.print(
        f"Mercato: {len(services)} services on {settings.broker_shown}, "
        f"data in {settings.data_dir.resolve()}, HTTP on http://{settings.host}:{settings.port}"
    )
    _run_http(System(services, settings), settings)


def serve(
    services: Annotated[
        list[str],
        typer.Argument(help="Service names (or module:attribute), run together in this process"),
    ],
    port: Annotated[int | None, typer.Option(help="HTTP port for /healthz and /readyz")] = None,
) -> None:
    """Run one service, or several in one process, against the configured broker and database.

    Alone, a service's gRPC server takes MERCATO_GRPC_PORT; together, each takes the port of
    its own address in MERCATO_GRPC_TARGETS (any free port if it has none there, or several),
    and calls between them stay in the process."""
    settings = settings_or_exit(port=port)
    if len(set(services)) < len(services):
        fail(f"a service named twice: {' '.join(services)}")
    try:
        definitions: list[Service] = [load_service(name) for name in services]
    except UnknownService as exc:
        fail(str(exc))
    ports: dict[str, int] = {}
    if len(definitions) > 1:
        ports = own_ports([d.name for d in definitions], parse_targets(settings.grpc_targets))
    _run_http(System(definitions, settings, grpc_ports=ports), settings)


def own_ports(names: list[str], targets: dict[str, str]) -> dict[str, int]:
    """The gRPC port each of ``names`` is to bind: that of its one address in ``targets`` (none
    for a service without one, or with several: replicas)."""
    ports: dict[str, int] = {}
    for name in names:
        target = targets.get(name, "")
        _, _, number = target.rpartition(":")
        if "," not in target and number.isdigit():
            ports[name] = int(number)
    return ports


def _parse_replicas(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not number.isdigit() or int(number) < 1:
            fail(f"--replicas {value!r}: expected SERVICE=N with N ≥ 1")
        if name not in SERVICES:
            fail(f"--replicas {value!r}: unknown service {name!r}")
        counts[name] = int(number)
    return counts


def _supervise(settings: Settings, plan: list[tuple[str, ...]]) -> None:
    if settings.broker_kind == "memory":
        fail(
            "--processes needs a broker that processes share: set MERCATO_BROKER_URL to "
            "amqp://guest:guest@127.0.0.1:5672/ or nats://127.0.0.1:4222"
        )
    path = status_path(settings.data_dir)
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        other, _ = read_status(path.read_text())
        if other is not None and other != os.getpid() and alive(other):
            fail(
                f"another supervisor (pid {other}) runs with the data directory {path.parent} "
                f"(if it does not, remove {path})"
            )
    # Ports: the gateway's process keeps PORT; every other process gets PORT+1… for its health
    # endpoints; the k-th service started gets PORT+1000+k for its gRPC; every process is told
    # all gRPC addresses.
    processes: list[tuple[tuple[str, ...], int, list[int]]] = []
    next_port, next_grpc = settings.port + 1, settings.port + 1000
    for names in plan:
        http_port = settings.port if "gateway" in names else next_port
        next_port += "gateway" not in names
        grpc_ports = list(range(next_grpc, next_grpc + len(names)))
        next_grpc += len(names)
        processes.append((names, http_port, grpc_ports))
    addresses: dict[str, list[str]] = {}
    for names, _, grpc_ports in processes:
        for name, grpc_port in zip(names, grpc_ports, strict=True):
            addresses.setdefault(name, []).append(f"{settings.grpc_host}:{grpc_port}")
    targets = ",".join(
        f"{name}={'ipv4:' if len(addrs) > 1 else ''}{','.join(addrs)}"
        for name, addrs in addresses.items()
    )
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    children: list[Child] = []
    for names, http_port, grpc_ports in processes:
        env = {
            **os.environ,
            "MERCATO_DATA_DIR": str(settings.data_dir),
            "MERCATO_PORT": str(http_port),
            "MERCATO_GRPC_PORT": str(grpc_ports[0]),
            "MERCATO_GRPC_TARGETS": targets,
        }
        status = ProcessStatus(
            "+".join(names), plan[: len(children) + 1].count(names), plan.count(names), None, ""
        )
        consumes = consumes_events(names)
        if not consumes:
            status.state = "waiting"  # for the consumers (see supervisor.py)
        children.append(
            Child(names, status, env, f"http://{host}:{http_port}/readyz", consumes=consumes)
        )
        console.print(
            f"{children[-1].label}: HTTP :{http_port}, gRPC :{',:'.join(map(str, grpc_ports))}"
        )
    code = asyncio.run(Supervisor(settings, children).run())
    if code:
        gave_up = next(c for c in children if c.status.state == "gave up")
        fail(
            f"{gave_up.label} exited {settings.restart_limit} times within "
            f"{settings.restart_window:g} s (last: {gave_up.status.last_exit}): gave up, "
            "stopped everything",
            code=code,
        )
