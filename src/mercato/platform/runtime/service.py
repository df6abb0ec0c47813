"""A service, declared once: its database migrations, event handlers, gRPC servicer, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mercato.platform import tracing
from mercato.platform.envelope import Envelope
from mercato.platform.inbox import On, OnEvery, Prefetch
from mercato.platform.settings import Settings
from mercato.platform.storage.sql import Database
from mercato.platform.unit_of_work import Committed, UnitOfWork, transaction

if TYPE_CHECKING:
    import grpc.aio
    from starlette.types import ASGIApp

    from mercato.platform.bus.port import EventBus
    from mercato.platform.runtime.local_grpc import LocalServices


# The ``batch_wait`` of the consumers nobody waits on (audit, notification, recommendation,
# webhooks): on a broker, their batches fill for up to this many seconds.
UNHURRIED = 0.2


@dataclass(frozen=True)
class Service:
    """Everything the runtime needs to know to run one service, in either mode.

    - ``migrations``: the folder of the service's Alembic revisions (its own branch);
    - ``handlers``: ``on(EventType, function)`` declarations; the queue binds to exactly these
      (``every(function)``: to every event, with one wildcard);
    - ``grpc``: registers the service's servicers on a ``grpc.aio`` server and returns their
      full names (for reflection and health);
    - ``http``: returns an ASGI app (a FastAPI app: only the gateway has public routes), it takes
      every request not for the process's own /healthz, /readyz and /metrics;
    - ``tasks``: background loops (timeouts, the sandbox carrier…) run while the service runs;
    - ``on_start``: one-off start-up work (seed data) after migrations;
    - ``prefetch``: reads at once what a batch of events' handlers would each read (below);
    - ``batch_wait``: seconds a batch of events may wait to fill once its first came (0: take
      what is there). For consumers nobody waits on (the audit log, mail, recommendations,
      webhooks): fewer, larger transactions for a delay no one sees.
    """

    name: str
    migrations: Path | None = None
    handlers: Sequence[On | OnEvery] = ()
    grpc: Callable[[grpc.aio.Server, ServiceContext], Sequence[str]] | None = None
    http: Callable[[ServiceContext], ASGIApp] | None = None
    tasks: Sequence[Callable[[ServiceContext], Awaitable[None]]] = ()
    on_start: Callable[[ServiceContext], Awaitable[None]] | None = None
    prefetch: Prefetch | None = None
    batch_wait: float = 0.0


@dataclass
class ServiceContext:
    """What a running service's code is handed: its settings, database and bus."""

    service: Service
    settings: Settings
    db: Database
    bus: EventBus
    relay_committed: Committed | None = None  # the outbox rows of a commit, for the relay
    grpc_targets: dict[str, str] = field(default_factory=dict)
    local: LocalServices | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.service.name

    def channel(self, service: str, *, in_process: bool = True) -> grpc.aio.Channel:
        """A shared gRPC channel to another service: in-process when that service runs in
        this process (see ``local_grpc``), else (or without ``in_process``: for the platform's
        Operations, which ``local_grpc`` does not carry) to its address from ``grpc_targets``."""
        if in_process and self.local is not None and service in self.local:
            return self.local.channel(self.name)
        channel = self._channels.get(service)
        if channel is None:
            channel = self._channels[service] = self._dial(service)
        return channel

    def own_channel(self, service: str) -> grpc.aio.Channel:
        """A channel to ``service`` of the caller's own, which the caller closes (in-process
        when the service runs here: nothing to close), for a long-lived stream. Its
        connections are its own too (gRPC otherwise shares them among channels to the same
        address): its attempts to connect to a service not up yet must not put the shared
        channel's connection in back-off, where every call on it fails at once."""
        if self.local is not None and service in self.local:
            return self.local.channel(self.name)
        return self._dial(service, ("grpc.use_local_subchannel_pool", 1))

    def _dial(self, service: str, *options: tuple[str, Any]) -> grpc.aio.Channel:
        import grpc.aio

        target = self.grpc_targets.get(service)
        if target is None:
            raise LookupError(f"no gRPC address known for service {service!r}")
        otel = tracing.otel
        return grpc.aio.insecure_channel(
            target,
            options=[("grpc.lb_policy_name", "round_robin"), *options],
            interceptors=otel.client_interceptors(self.name) if otel is not None else None,
        )

    async def close_channels(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    @asynccontextmanager
    async def transaction(self, cause: Envelope | None = None) -> AsyncIterator[UnitOfWork]:
        async with transaction(self.db, self.name, cause, self.relay_committed) as uow:
            yield uow
