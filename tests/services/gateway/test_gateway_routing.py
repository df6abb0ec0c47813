"""The gateway's routes, put straight in its app (not through ``include_router``) and tried
hot routers first: documented and resolved exactly as including the routers would."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match

from mercato.platform.runtime.service import ServiceContext
from mercato.services.gateway.app import WDM_NOTE, create_app
from mercato.services.gateway.problems import PROBLEM_RESPONSES, ProblemDetails
from mercato.services.gateway.routes import ROUTERS, WDM
from mercato.services.gateway.service import service as gateway
from tests.support import running
from tests.support import test_settings as make_settings

# A value for each kind of path parameter (``{amount:int}`` and the like).
SAMPLES: dict[str, Any] = {
    "String": "x-1",
    "Integer": 7,
    "Float": 1.5,
    "Path": "a/b",
    "UUID": uuid.UUID(int=1),
}


@pytest.fixture(params=[False, True], ids=["wdm-off", "wdm-on"])
async def served(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[ServiceContext, httpx.AsyncClient]]:
    settings = make_settings(tmp_path, wdm_api=request.param)
    async with running([gateway], settings) as (system, http):
        ctx = system.hosts["gateway"].ctx
        assert ctx is not None
        yield ctx, http


def routers(wdm: bool = True) -> list[APIRouter]:
    """The gateway's routers, the WDM API's among them if it is on."""
    return [r for r in ROUTERS if wdm or r not in WDM]


def included(wdm: bool = True) -> FastAPI:
    """The routers included the ordinary way, in their documented order."""
    app = FastAPI()
    for router in routers(wdm):
        app.include_router(router)
    return app


def declared(wdm: bool = True) -> list[APIRoute]:
    return [r for router in routers(wdm) for r in router.routes if isinstance(r, APIRoute)]


def resolve(routes: Sequence[BaseRoute], method: str, path: str) -> tuple[Match, BaseRoute | None]:
    """What a router does with the request: the first full match, else the first partial."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
    partial: BaseRoute | None = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return match, route
        if match == Match.PARTIAL and partial is None:
            partial = route
    return (Match.PARTIAL, partial) if partial is not None else (Match.NONE, None)


async def test_the_openapi_document_is_the_included_routers_one(
    served: tuple[ServiceContext, httpx.AsyncClient],
) -> None:
    ctx, http = served
    wdm = ctx.settings.wdm_api
    document = (await http.get("/openapi.json")).json()
    app = create_app(ctx)
    expected = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=included(wdm).routes,
        tags=[{"name": "wdm", "description": WDM_NOTE}] if wdm else None,
    )
    for item in expected["paths"].values():
        for operation in item.values():
            if operation["tags"] == ["wdm"]:
                operation["description"] = WDM_NOTE
    expected["components"]["schemas"]["ProblemDetails"] = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    # Key order too: /docs lists the paths, and the tags, in the order of the document.
    assert json.dumps(document) == json.dumps(expected)


def test_every_route_documents_the_problem_answers() -> None:
    # What ``include_router(router, responses=PROBLEM_RESPONSES)`` gave every route.
    assert [r.path for r in declared() if not set(PROBLEM_RESPONSES) <= set(r.responses)] == []


async def test_every_route_resolves_as_in_the_documented_order(
    served: tuple[ServiceContext, httpx.AsyncClient],
) -> None:
    app = create_app(served[0])
    routes = declared(served[0].settings.wdm_api)
    # The app's own (docs, their assets) are not the routers'.
    own = [r for r in app.routes if not isinstance(r, APIRoute) or not r.include_in_schema]
    assert sorted(map(id, routes)) == sorted(id(r) for r in app.routes if r not in own)
    documented = [*own, *routes]
    methods = {m for route in routes for m in route.methods or ()}
    for route in routes:
        params = route.param_convertors.items()
        samples = {name: SAMPLES[type(c).__name__.removesuffix("Convertor")] for name, c in params}
        path = route.url_path_for(route.name, **samples)
        for method in methods:
            assert resolve(app.routes, method, path) == resolve(documented, method, path), (
                method,
                path,
            )


async def test_the_wdm_api_is_served_and_documented_only_when_on(
    served: tuple[ServiceContext, httpx.AsyncClient],
) -> None:
    ctx, http = served
    document = (await http.get("/openapi.json")).json()
    wdm = [
        operation
        for item in document["paths"].values()
        for operation in item.values()
        if "wdm" in operation["tags"]
    ]
    answer = await http.get("/payment/find_user/1")
    if ctx.settings.wdm_api:
        assert len(wdm) == 15
        assert all("acts as the admin" in o["description"] for o in wdm)
        assert answer.status_code != 404  # on: the route is there (identity is not)
    else:
        assert wdm == []
        assert answer.status_code == 404
