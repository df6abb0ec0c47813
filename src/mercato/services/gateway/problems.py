"""RFC 9457 problem details: every error the gateway answers is ``application/problem+json``.

Raise ``Problem(status, detail)`` anywhere in a route; FastAPI's own errors (validation, 404,
405) are turned into problems by the handlers installed here, and anything unexpected becomes a
bare 500 problem in ``middleware`` (logged with its stack trace, never shown).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Route

MEDIA_TYPE = "application/problem+json"


class ProblemDetails(BaseModel):
    """The body of every error response (RFC 9457)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    requestId: str | None = None
    errors: list[dict[str, Any]] | None = None


class Problem(Exception):
    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ):
        super().__init__(detail or title or str(status))
        self.status = status
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = headers or {}
        self.errors = errors


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = ProblemDetails(
        title=problem.title,
        status=problem.status,
        detail=problem.detail,
        instance=request.url.path,
        requestId=getattr(request.state, "request_id", None),
        errors=problem.errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=problem.status,
        headers=problem.headers,
        media_type=MEDIA_TYPE,
    )


async def _on_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route with the path; others may have more.
        headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
    return problem_response(request, Problem(exc.status_code, detail, headers=headers))


def allowed_methods(request: Request) -> set[str]:
    """Every method some route of the app takes at the request's path."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return methods


async def _on_invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Never echo the input back: it may hold a password or a card number.
    errors = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return problem_response(
        request, Problem(422, "the request is not valid; see errors", errors=errors)
    )


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_invalid_request)


def _problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/ProblemDetails"}
    return {"description": description, "content": {MEDIA_TYPE: {"schema": schema}}}


# The error answers any route may give; ``app`` adds them to every router it includes.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Bad request"),
    401: _problem("Not signed in, or the token is not valid"),
    403: _problem("Signed in without the right to do this"),
    404: _problem("Not found"),
    409: _problem("Already exists (an id or an email taken), or changed meanwhile: retry"),
    413: _problem("The request body is over MERCATO_MAX_BODY_BYTES"),
    422: _problem(
        "The request is not valid as given, or not in the current state (cancelling a "
        "delivered order, checking out an empty cart)"
    ),
    429: _problem("Too many requests"),
    503: _problem("A service behind the gateway is unavailable"),
}
