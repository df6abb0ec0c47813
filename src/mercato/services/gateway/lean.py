"""Requests to the gateway's routes, served without FastAPI's generic request handling.

Under the bench's load, a third of the embedded system's CPU went to the HTTP framework
around the endpoints (docs/performance.md): for every request, FastAPI's router tries the
routes one by one, wraps the request in two exit stacks and an exception wrapper, and solves
the endpoint's dependencies through machinery built for every kind there is (scopes, caches,
generators, overrides, thread pools). Most of the gateway's routes need none of it: path,
query and header parameters, a JSON body, the ``Upstream`` handle and the verified caller.

``LeanRoutes`` sits inside the gateway's own middleware (request id, limits, CORS) and serves every
GET whose route needs only such things, and the writes named in ``routes.LEAN_WRITES`` (what a
checkout calls), with FastAPI's own pieces wherever the answer is decided: the route FastAPI's
router would pick (the first whose path matches and that takes the method), the parameters
and the body validated by FastAPI's ``request_params_to_args`` and ``request_body_to_args``
(the same values and errors), the endpoint itself, its return serialized by FastAPI's
``serialize_response``, and an exception answered by the handler the app installed for it.
A request whose parameters or body do not validate, or whose body is not JSON, goes on to
FastAPI (nothing has run yet; a body already read is handed over again), so every error
answer stays FastAPI's. A route that needs anything else (cookies, a form, background tasks,
a dependency that is not a coroutine of the request and other such dependencies, a response
class of its own) is always left to FastAPI, and so is every request while dependency
overrides are set. The tests compare the answers with and without it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import params
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import request_body_to_args, request_params_to_args
from fastapi.routing import APIRoute, serialize_response
from fastapi.telemetry._api import _route_selected
from fastapi.utils import is_body_allowed_for_status_code
from starlette._utils import get_route_path
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Cache = dict[Callable[..., Any], Any]
NO_BODY = object()


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one route is served here."""

    route: APIRoute

    async def serve(
        self, request: Request, path_params: dict[str, Any], body: Any
    ) -> Response | None:
        """The response, or None if the parameters or the body do not validate (FastAPI
        answers). ``body`` is the request's JSON (``NO_BODY`` if it has none that is JSON)."""
        dependant = self.route.dependant
        values, errors = request_params_to_args(dependant.path_params, path_params)
        for fields, given in (
            (dependant.query_params, request.query_params),
            (dependant.header_params, request.headers),
        ):
            found, wrong = request_params_to_args(fields, given)
            values.update(found)
            errors.extend(wrong)
        if dependant.body_params:
            if body is NO_BODY:
                return None
            found, wrong = await request_body_to_args(
                dependant.body_params, body, self.route._embed_body_fields
            )
            values.update(found)
            errors.extend(wrong)
        if errors:
            return None
        if dependant.request_param_name:
            values[dependant.request_param_name] = request
        side: Response | None = None
        if dependant.response_param_name:  # headers (and a status) the endpoint sets
            side = values[dependant.response_param_name] = Response()
            del side.headers["content-length"]
            side.status_code = None  # type: ignore[assignment]
        cache: Cache = {}
        for sub in dependant.dependencies:
            assert sub.name is not None
            values[sub.name] = await _solve(sub, request, cache)
        route = self.route
        returned = await route.endpoint(**values)
        if isinstance(returned, Response):  # the endpoint's own answer, as FastAPI sends it
            return returned
        content = await serialize_response(
            field=route.response_field,
            response_content=returned,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            is_coroutine=True,
            dump_json=True,
        )
        status = route.status_code or (side.status_code if side is not None else None) or 200
        response = Response(content, status_code=status, media_type="application/json")
        if not is_body_allowed_for_status_code(response.status_code):
            response.body = b""
        if side is not None:
            response.headers.raw.extend(side.headers.raw)
        return response


async def _solve(dependant: Dependant, request: Request, cache: Cache) -> Any:
    """A dependency of the request and other such dependencies, each solved once per
    request (as FastAPI's cache does)."""
    call = dependant.call
    assert call is not None
    if dependant.use_cache and call in cache:
        return cache[call]
    kwargs: dict[str, Any] = {}
    if dependant.request_param_name:
        kwargs[dependant.request_param_name] = request
    for sub in dependant.dependencies:
        assert sub.name is not None
        kwargs[sub.name] = await _solve(sub, request, cache)
    value = await call(**kwargs)
    if dependant.use_cache:
        cache[call] = value
    return value


def _plain(dependant: Dependant, *, top: bool) -> bool:
    """Whether ``dependant`` needs nothing but what ``_Plan.serve`` and ``_solve`` give."""
    call = dependant.call
    coroutine = inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
        getattr(call, "__call__", None)  # noqa: B004 - an instance with an async __call__
    )
    takes = bool(
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.body_params
        or dependant.response_param_name
    )
    return (
        coroutine
        and (top or not takes)
        and not dependant.cookie_params
        and dependant.websocket_param_name is None
        and dependant.http_connection_param_name is None
        and dependant.background_tasks_param_name is None
        and dependant.security_scopes_param_name is None
        and all(_plain(sub, top=False) for sub in dependant.dependencies)
    )


def plan_for(route: BaseRoute, writes: Collection[Callable[..., Any]] = ()) -> _Plan | None:
    """How ``route`` is served here, or None if it is FastAPI's alone: any plain GET, and the
    routes of ``writes`` (endpoints) that take a JSON body, as plain otherwise."""
    if not isinstance(route, APIRoute) or route.methods is None or len(route.methods) != 1:
        return None
    if route.methods != {"GET"} and route.endpoint not in writes:
        return None
    if not isinstance(route.response_class, DefaultPlaceholder) or route.response_field is None:
        return None
    if not _plain(route.dependant, top=True) or len(route.dependant.body_params) > 1:
        return None
    if route.body_field is not None and not _json_body(route):
        return None
    return _Plan(route)


def _json_body(route: APIRoute) -> bool:
    """A body FastAPI reads as JSON (not a form, not a file)."""
    field = route.body_field
    return field is not None and type(field.field_info) is params.Body


class LeanRoutes:
    """ASGI middleware: requests to the routes ``plan_for`` takes served here (plain GETs and
    the ``writes``), everything else passed on."""

    def __init__(
        self,
        app: ASGIApp,
        routes: Sequence[BaseRoute],
        handlers: Callable[[], dict[Any, Callable[..., Awaitable[Response] | Response]]],
        writes: Collection[Callable[..., Any]] = (),
    ):
        self.app = app
        self._routes = routes
        self._handlers = handlers
        self._writes = writes
        self._table: list[tuple[BaseRoute, _Plan | None]] | None = None

    def _routing(self) -> list[tuple[BaseRoute, _Plan | None]]:
        # Built on the first request: the app's routes are all in by then.
        if self._table is None:
            self._table = [(route, plan_for(route, self._writes)) for route in self._routes]
        return self._table

    def _pick(self, scope: Scope) -> tuple[_Plan, dict[str, Any]] | None:
        """The route FastAPI's router would take for this request, if it is served here."""
        method = scope["method"]
        path = get_route_path(scope)
        for route, plan in self._routing():
            if isinstance(route, WebSocketRoute):
                continue
            if not isinstance(route, Route):
                if route.matches(scope)[0] != Match.NONE:
                    return None  # a mount or the like: the router decides
                continue
            found = route.path_regex.match(path)
            if found is None or method not in route.methods:  # type: ignore[operator]
                continue
            if plan is None or _overridden(plan.route):
                return None
            params = {
                key: route.param_convertors[key].convert(value)
                for key, value in found.groupdict().items()
            }
            return plan, params
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        picked = self._pick(scope) if scope["type"] == "http" else None
        if picked is None:
            await self.app(scope, receive, send)
            return
        plan, path_params = picked
        body: Any = NO_BODY
        if plan.route.dependant.body_params:
            # Read whole here; whoever reads the request after (FastAPI, if it answers) gets
            # the same messages again, and the same failure if reading failed.
            receive, body = await _read_json(receive, scope)
        scope["path_params"] = path_params
        scope["route"] = plan.route  # as the router sets it (the metrics read its template)
        if "fastapi.telemetry" in scope:  # the request's span is named by its route
            _route_selected(scope=scope, path=plan.route.path)
        request = Request(scope, receive, send)
        try:
            response = await plan.serve(request, path_params, body)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            answered = handler(request, exc)
            response = await answered if inspect.isawaitable(answered) else answered
        if response is None:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[..., Any] | None:
        """The handler the app installed for ``exc``, as FastAPI's exception middleware looks
        it up (the one for ``Exception`` is the server-error middleware's, outside)."""
        handlers = self._handlers()
        for cls in type(exc).__mro__:
            if cls is Exception:
                break
            if cls in handlers:
                return handlers[cls]
        return None


def _overridden(route: APIRoute) -> bool:
    provider = route.dependency_overrides_provider
    return bool(getattr(provider, "dependency_overrides", None))


async def _read_json(receive: Receive, scope: Scope) -> tuple[Receive, Any]:
    """The request's messages read whole, a receive that gives them again, and the body's
    JSON: ``NO_BODY`` unless the content type is ``application/json`` and the body parses
    (every other case is FastAPI's to answer, from the same messages)."""
    messages: list[Message] = []
    failure: BaseException | None = None
    chunks: list[bytes] = []
    try:
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
    except Exception as exc:  # the body limit, a disconnect: FastAPI meets it again
        failure = exc
    replayed = iter(messages)

    async def again() -> Message:
        for message in replayed:
            return message
        if failure is not None:
            raise failure
        return await receive()

    body: Any = NO_BODY
    content_type = Headers(scope=scope).get("content-type", "")
    complete = failure is None and messages and messages[-1]["type"] == "http.request"
    if complete and content_type.split(";", 1)[0].strip().lower() == "application/json":
        raw = b"".join(chunks)
        if raw:
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):  # RecursionError: nested too deep
                body = NO_BODY
    return again, body
