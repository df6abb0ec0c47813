"""What keeps a request cheap: no route sends work to the thread pool."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from mercato.services.gateway.routes import ROUTERS


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _is_coroutine(call: Any) -> bool:
    if inspect.isclass(call):
        return False  # FastAPI runs a class (its __init__) in the thread pool
    # A dependency may be an instance with an ``async def __call__`` (the bearer caller).
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def test_every_endpoint_and_dependency_runs_on_the_event_loop() -> None:
    # A plain ``def`` (or a class) as an endpoint or a dependency costs a hand-over to
    # FastAPI's thread pool and back on every request that uses it.
    in_thread_pool = [
        f"{route.path} {getattr(call, '__qualname__', call)}"
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for call in (route.endpoint, *_calls(route.dependant))
        if not _is_coroutine(call)
    ]
    assert in_thread_pool == []
