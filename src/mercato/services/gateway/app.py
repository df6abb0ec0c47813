"""The gateway's FastAPI app: problem+json errors, request ids, CORS, OpenAPI 3.1, routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi_offline import FastAPIOffline
from starlette.routing import Mount

from mercato.platform import tracing
from mercato.platform.runtime.service import ServiceContext
from mercato.services.gateway import web
from mercato.services.gateway.lean import LeanRoutes
from mercato.services.gateway.middleware import BodyLimit, RequestContext
from mercato.services.gateway.problems import ProblemDetails, install_problem_handlers
from mercato.services.gateway.routes import HOT, LEAN_WRITES, ROUTERS, WDM

DESCRIPTION = """Mercato's public API. Errors are RFC 9457 `application/problem+json`.
Sign in with `POST /api/v1/auth/login` and send `Authorization: Bearer <accessToken>`.
A POST that creates something honours `Idempotency-Key`."""
WDM_NOTE = (
    "The WDM benchmark's API (on with `MERCATO_WDM_API=1`): it takes no credentials and acts "
    "as the admin account of `MERCATO_ADMIN_EMAIL`, for anyone who can reach it."
)


def _untraced(scope: Any) -> bool:
    """Requests without a span: the docs' assets."""
    return bool(scope.get("path", "").startswith("/docs/assets"))


def create_app(ctx: ServiceContext, *, lean: bool = True) -> FastAPI:
    """The gateway's app. ``lean=False`` leaves every request to FastAPI (the tests compare
    the answers both ways)."""
    traced = tracing.otel.provider(ctx.name) if tracing.otel is not None else None
    # FastAPIOffline: /docs (Swagger UI) and /redoc with their scripts and styles served from
    # the installed package (/docs/assets), not a CDN: offline, nothing foreign loaded.
    app = FastAPIOffline(
        static_url="/docs/assets",
        title="Mercato",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url="/redoc",
        # FastAPI's own OpenTelemetry: the request's span, when tracing is on, with the
        # gateway's tracer provider (metrics are Prometheus', logs structlog's). Off, left
        # off: FastAPI would look up the global providers on every request only to find them
        # unconfigured.
        telemetry={
            "tracing": traced is not None,
            "tracer_provider": traced,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "exclude": _untraced,
        },
    )
    app.state.ctx = ctx
    app.state.rate_limiters = {}
    install_problem_handlers(app)
    # The routers' routes themselves, not ``include_router``: this FastAPI wraps an included
    # router in a route of its own that, on every request, tries each of its routes through
    # a per-inclusion copy (its "effective route context"), router after router, until one
    # matches. The routes already carry their full path, tags and problem responses (they
    # are shared by every app made here, so ``app.dependency_overrides`` does not reach them).
    routers = [r for r in ROUTERS if ctx.settings.wdm_api or r not in WDM]
    for router in [*HOT, *(r for r in routers if r not in HOT)]:
        app.router.routes.extend(router.routes)
    # The storefront and console pages: the app's own, like /docs (not API operations).
    app.router.routes.extend(web.router.routes)
    # The docs' assets last: every request tries the routes in order (0.6 µs a request for the
    # mount's match when it stood first).
    app.router.routes.sort(key=lambda route: isinstance(route, Mount))
    if lean:
        # Innermost of the middleware: requests served there still get their request id and
        # CORS headers.
        app.add_middleware(
            LeanRoutes,
            routes=app.router.routes,
            handlers=lambda: app.exception_handlers,
            writes=LEAN_WRITES,
        )
    app.add_middleware(BodyLimit, limit=ctx.settings.max_body_bytes)
    app.add_middleware(RequestContext)
    origins = [o.strip() for o in ctx.settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
            max_age=600,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=[route for router in routers for route in router.routes],
                tags=[{"name": "wdm", "description": WDM_NOTE}] if ctx.settings.wdm_api else None,
            )
            for item in schema["paths"].values():
                for operation in item.values():
                    if "wdm" in operation.get("tags", ()):
                        operation["description"] = WDM_NOTE
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["ProblemDetails"] = ProblemDetails.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
