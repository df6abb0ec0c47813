"""Runs one service: database and migrations, relay, inbox consumer, redriver, gRPC (its own
API and the platform's Operations), tasks."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import grpc.aio
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mercato.api.operations.v1 import operations_pb2_grpc
from mercato.platform import tracing
from mercato.platform.bus.port import EventBus, Subscription
from mercato.platform.dead_letters import Redriver
from mercato.platform.inbox import InboxConsumer, RetryPolicy
from mercato.platform.metrics import count_commits
from mercato.platform.operations import NAME as OPERATIONS
from mercato.platform.operations import OperationsApi
from mercato.platform.outbox import OutboxRelay
from mercato.platform.runtime.grpc_errors import HideInternalErrors
from mercato.platform.runtime.local_grpc import LocalServices
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.platform.settings import Settings
from mercato.platform.storage.database import (
    ensure_database,
    open_database,
    ping,
    service_url,
)
from mercato.platform.storage.migrate import migrate
from mercato.platform.waits import within

log = structlog.get_logger(__name__)


class StartupError(RuntimeError):
    """The system could not start, for a reason one line says (a database or a broker that
    cannot be reached…); ``mercato up``/``serve`` print that line instead of a traceback."""


def reason(error: BaseException) -> str:
    """An error's first line (SQLAlchemy's add a link on lines of their own)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ServiceHost:
    def __init__(
        self,
        service: Service,
        settings: Settings,
        bus: EventBus,
        grpc_port: int = 0,
        grpc_targets: dict[str, str] | None = None,
        local: LocalServices | None = None,
    ):
        self.service = service
        self.settings = settings
        self.bus = bus
        self.requested_grpc_port = grpc_port
        # Shared by every host of one System: each adds its own address when it starts.
        self.grpc_targets = grpc_targets if grpc_targets is not None else {}
        # Shared likewise: the servicers of this process, called without the network.
        self.local = local if local is not None else LocalServices()
        self.grpc_port: int | None = None
        self.ctx: ServiceContext | None = None
        self.relay: OutboxRelay | None = None
        self.consumer: InboxConsumer | None = None
        self._subscription: Subscription | None = None
        self._grpc: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._relay_task: asyncio.Task[Any] | None = None

    @property
    def name(self) -> str:
        return self.service.name

    async def start(self) -> None:
        s = self.settings
        url = service_url(s.database_url, self.name, s.data_dir)
        db = open_database(url, s.database_pool_size)
        try:
            await ensure_database(url)
            await migrate(db, self.service.migrations)
        except Exception as error:
            where = url.render_as_string(hide_password=True)
            log.debug("database start-up failed", service=self.name, exc_info=True)
            raise StartupError(
                f"{self.name}: cannot open or migrate its database {where}: {reason(error)}"
            ) from error
        count_commits(db, self.name)
        self.relay = OutboxRelay(db, self.bus, self.name, poll_interval=s.relay_poll_interval)
        self.ctx = ServiceContext(
            self.service,
            s,
            db,
            self.bus,
            self.relay.committed,
            grpc_targets=self.grpc_targets,
            local=self.local,
        )
        if self.service.on_start is not None:
            await self.service.on_start(self.ctx)
        if self.service.handlers:
            policy = RetryPolicy(max_attempts=s.max_attempts, base_delay=s.retry_base_delay)
            self.consumer = InboxConsumer(
                self.name,
                db,
                self.service.handlers,
                policy=policy,
                on_events=self.relay.committed,
                prefetch=self.service.prefetch,
                system=tracing.system_of(self.bus),
            )
            self._subscription = await self.bus.subscribe(
                self.name,
                self.consumer.patterns,
                self.consumer,
                batch_size=s.batch_size,
                batch_wait=self.service.batch_wait,
                # The broker's own limit only catches crash loops (a handler that kills its
                # process); ordinary failures are dead-lettered by the consumer first.
                max_deliveries=policy.max_attempts + 3,
            )
            self._spawn(Redriver(db, self.consumer).run(), "redriver")
        await self._start_grpc(self.ctx)
        for task in self.service.tasks:
            self._spawn(task(self.ctx), task.__name__)
        log.info("service started", service=self.name, grpc_port=self.grpc_port)

    def start_relay(self) -> None:
        """Start publishing: after every consumer of this bus has subscribed (see MemoryBus)."""
        assert self.relay is not None
        self._relay_task = asyncio.create_task(self.relay.run(), name=f"{self.name}:relay")
        self._relay_task.add_done_callback(self._task_done)

    async def _start_grpc(self, ctx: ServiceContext) -> None:
        """The service's own API, if it has one, and the platform's Operations (every
        service's: its full method names are the same in each, so it is never in ``local``,
        whose in-process calls go by method name; the gateway calls it over the network)."""
        otel = tracing.otel
        traced = otel.server_interceptors(self.name) if otel is not None else []
        server = grpc.aio.server(interceptors=[*traced, HideInternalErrors()])
        names: list[str] = []
        if self.service.grpc is not None:
            names += self.service.grpc(self.local.recording(server, self.name), ctx)
        operations = OperationsApi(ctx, self.consumer, self.ready)
        operations_pb2_grpc.add_OperationsServicer_to_server(operations, server)  # type: ignore[no-untyped-call]
        names.append(OPERATIONS)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        self.grpc_port = server.add_insecure_port(
            f"{self.settings.grpc_host}:{self.requested_grpc_port}"
        )
        await server.start()
        self.grpc_targets.setdefault(self.name, f"{self.settings.grpc_host}:{self.grpc_port}")
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        self._grpc = server

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.name}:{what}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("background task died", task=task.get_name(), error=str(task.exception()))

    async def ready(self) -> None:
        """Raise if the database or the broker cannot be reached."""
        assert self.ctx is not None
        await ping(self.ctx.db)
        await self.bus.ping()

    async def stop_consuming(self) -> None:
        """Stop taking messages; the batch in hand commits first, if it does within
        ``shutdown_timeout``. Past that it is cancelled (a handler that hangs): its
        transaction rolls back and its messages go back to the broker for redelivery."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            stopping = asyncio.ensure_future(subscription.stop())
            try:
                await within(self.settings.shutdown_timeout, asyncio.shield(stopping))
            except TimeoutError:
                if self.consumer is not None:
                    abandoned = self.consumer.abandon()
                    log.warning(
                        "handlers still running at the shutdown timeout; cancelled",
                        service=self.name,
                        batches=abandoned,
                    )
                await stopping

    async def stop(self) -> None:
        """Drain: stop taking messages, let the batch in hand commit, send what it wrote."""
        await self.stop_consuming()
        if self._grpc is not None:
            await self._grpc.stop(grace=self.settings.shutdown_timeout / 2)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a task that does not end when cancelled must not hold the stop forever.
            ended, stuck = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_timeout)
            for task in ended:  # what a task raised was logged where it ran; mark it seen
                if not task.cancelled():
                    task.exception()
            if stuck:
                names = sorted(t.get_name() for t in stuck)
                log.warning("tasks still running after cancel", service=self.name, tasks=names)
        if self._relay_task is not None and self.relay is not None:
            self.relay.stop()
            try:
                await within(self.settings.shutdown_timeout / 2, self._relay_task)
            except (TimeoutError, asyncio.CancelledError, Exception):
                pass
            # What the drained handlers wrote; anything unconfirmed stays for the next start.
            with contextlib.suppress(Exception):
                await within(self.settings.shutdown_timeout / 2, self.relay.relay_once())
        if self.ctx is not None:
            await self.ctx.close_channels()
            await self.ctx.db.dispose()
        log.info("service stopped", service=self.name)
