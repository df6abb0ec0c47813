"""A set of services sharing one bus in one process: all of them (`mercato up`) or one (`serve`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from time import perf_counter

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.platform.bus.factory import create_bus
from mercato.platform.bus.port import EventBus
from mercato.platform.metrics import http_seconds
from mercato.platform.runtime.gauges import refresh_gauges
from mercato.platform.runtime.host import ServiceHost, StartupError, reason
from mercato.platform.runtime.local_grpc import LocalServices
from mercato.platform.runtime.service import Service
from mercato.platform.settings import Settings, parse_targets
from mercato.platform.waits import within

log = structlog.get_logger(__name__)


class System:
    def __init__(
        self,
        services: Sequence[Service],
        settings: Settings,
        bus: EventBus | None = None,
        grpc_ports: dict[str, int] | None = None,
    ):
        self.settings = settings
        self.bus = bus or create_bus(settings)
        ports = grpc_ports or {}
        self.grpc_targets = parse_targets(settings.grpc_targets)
        local = LocalServices()
        self.hosts = {
            s.name: ServiceHost(
                s,
                settings,
                self.bus,
                ports.get(s.name, settings.grpc_port),
                self.grpc_targets,
                local,
            )
            for s in services
        }

    async def start(self) -> None:
        try:
            await self.bus.connect()
        except Exception as error:  # the bus's message names the broker (password hidden)
            raise StartupError(reason(error)) from error
        started: list[ServiceHost] = []
        try:
            for host in self.hosts.values():
                await host.start()
                started.append(host)
        except BaseException:
            for host in reversed(started):
                await host.stop()
            await self.bus.close()
            raise
        # Every consumer is subscribed before any relay publishes (see MemoryBus).
        for host in self.hosts.values():
            host.start_relay()

    async def stop(self) -> None:
        for host in self.hosts.values():
            await host.stop_consuming()
        for host in reversed(list(self.hosts.values())):
            await host.stop()
        await self.bus.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[System]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def readiness(self) -> dict[str, str]:
        async def check(host: ServiceHost) -> str:
            try:
                await within(2.0, host.ready())
                return "ok"
            except Exception as exc:
                return f"unavailable: {exc.__class__.__name__}: {exc}"[:300]

        results = await asyncio.gather(*(check(h) for h in self.hosts.values()))
        return dict(zip(self.hosts, results, strict=True))


class ProcessApp(FastAPI):
    """The process's own app. Once a service's app is set (``service_app``), every request
    for a path that is not one of this app's own routes goes straight to it: not through this
    app's middleware and router first and then the service app's own again (≈ 60 µs a request
    through the gateway, measured in process)."""

    service_app: ASGIApp | None = None
    _own: frozenset[str] = frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.service_app is not None
            and scope["type"] != "lifespan"
            and scope["path"] not in self._own
        ):
            if scope["type"] == "http":
                await timed(self.service_app, scope, receive, send)
            else:
                await self.service_app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def serve(self, service_app: ASGIApp | None) -> None:
        self._own = frozenset(getattr(route, "path", "") for route in self.routes)
        self.service_app = service_app


async def timed(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``app`` answering a request, its time observed by route template (the route the
    router took, ``unmatched`` if none: a label never takes a path as sent), method and
    status (``mercato_http_request_duration_seconds``)."""
    started = perf_counter()
    status = 500  # unless the app answers

    async def sending(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        await send(message)

    try:
        await app(scope, receive, sending)
    finally:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        http_seconds(template, scope["method"], str(status)).observe(perf_counter() - started)


def create_app(system: System) -> ProcessApp:
    """The process's HTTP face: health, readiness, metrics, and any routes its services have."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with system.running():
            apps = [
                host.service.http(host.ctx)
                for host in system.hosts.values()
                if host.service.http is not None and host.ctx is not None
            ]
            if len(apps) > 1:
                raise RuntimeError("only one service of a process may serve HTTP")
            # Every request the routes below do not take goes to it, path untouched.
            app.serve(apps[0] if apps else None)
            try:
                yield
            finally:
                app.serve(None)

    # The gateway's app (``service_app``) serves the public OpenAPI document and docs.
    app = ProcessApp(
        title="Mercato", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )

    @app.exception_handler(StarletteHTTPException)
    async def unrouted(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # In a process without the gateway, an unknown path is answered here: as
        # problem+json, like every other error.
        body = {
            "type": "about:blank",
            "title": HTTPStatus(exc.status_code).phrase,
            "status": exc.status_code,
            "detail": f"no route {request.method} {request.url.path}",
        }
        return JSONResponse(body, exc.status_code, media_type="application/problem+json")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        checks = await system.readiness()
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "services": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        await refresh_gauges(system.hosts.values())
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
