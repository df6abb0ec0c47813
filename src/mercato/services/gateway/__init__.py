"""The gateway: Mercato's public REST API (docs/design.md), in front of the services' gRPC APIs.

It keeps nothing durable. It verifies bearer tokens locally (identity's JWKS), enforces roles,
rate-limits login and registration per address, calls the services over gRPC with deadlines
and answers every error as problem+json.

Adding routes for an area (products, cart, orders…):

1. Write ``routes/<area>.py`` with ``router = APIRouter(prefix="/api/v1/<area>", tags=[...],
   responses=PROBLEM_RESPONSES)`` (``problems.PROBLEM_RESPONSES``: the problem+json error
   answers, documented on every route, so a route only lists its success response). Request
   and response bodies are pydantic models with the camelCase names of docs/design.md.
2. Use the dependencies:
   - ``security.CurrentCaller`` / ``security.AdminCaller``: the verified ``Caller`` (401 / 403
     otherwise); check ``caller.may_act_for(owner_id)`` for someone's own data;
   - ``upstream.Upstream``: ``await upstream.call("catalog", CatalogStub, "GetProduct", msg)``
     (deadline, forwards authorization / idempotency-key / x-request-id, gRPC errors become
     problems: UNAVAILABLE/DEADLINE_EXCEEDED 503, NOT_FOUND 404, INVALID_ARGUMENT and
     FAILED_PRECONDITION 422, ALREADY_EXISTS 409, PERMISSION_DENIED 403, UNAUTHENTICATED 401,
     RESOURCE_EXHAUSTED 429);
   - ``upstream.IdempotencyKey``: declare it as a parameter on a POST that creates something
     (``idempotency_key: IdempotencyKey = None``) so OpenAPI shows it; it is forwarded anyway;
   - ``problems.Problem(status, detail)``: raise it for any error of your own.
3. Add ``from mercato.services.gateway.routes import <area>`` and ``<area>.router`` to
   ``ROUTERS`` in ``routes/__init__.py`` (a one-line edit each); to ``HOT`` too if shoppers
   call it on every visit.

The app takes the routers' routes as they are (``app.py`` says why not ``include_router``).
"""
