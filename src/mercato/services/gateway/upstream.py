"""Calling the services behind the gateway: gRPC with a deadline, errors as problems.

In a route::

    from mercato.api.catalog.v1 import catalog_pb2, catalog_pb2_grpc
    from mercato.services.gateway.upstream import Upstream

    @router.get("/{productId}")
    async def get_product(productId: str, upstream: Upstream) -> Product:
        reply = await upstream.call(
            "catalog", catalog_pb2_grpc.CatalogStub, "GetProduct",
            catalog_pb2.GetProductRequest(product_id=productId),
        )

``call`` forwards the caller's ``authorization`` header, the ``idempotency-key`` header (on
POST/PUT/PATCH/DELETE) and the request id as gRPC metadata, applies the deadline
(``MERCATO_GRPC_DEADLINE`` unless ``timeout=`` says otherwise) and turns a failed call into a
``Problem`` with the status of ``STATUS``; a service that is down answers 503 at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import grpc
import grpc.aio
import structlog
from fastapi import Depends, Header, Request
from google.protobuf.message import Message

from mercato.platform.runtime.service import ServiceContext
from mercato.services.gateway import pages
from mercato.services.gateway.problems import Problem

log = structlog.get_logger(__name__)

C = grpc.StatusCode
# gRPC status → HTTP status. Anything not listed (UNKNOWN, INTERNAL, DATA_LOSS…) is a bug
# behind the gateway: 502, with its details logged and not shown.
STATUS: dict[grpc.StatusCode, int] = {
    C.INVALID_ARGUMENT: 422,
    C.FAILED_PRECONDITION: 422,
    C.OUT_OF_RANGE: 422,
    C.NOT_FOUND: 404,
    C.ALREADY_EXISTS: 409,
    C.ABORTED: 409,
    C.PERMISSION_DENIED: 403,
    C.UNAUTHENTICATED: 401,
    C.RESOURCE_EXHAUSTED: 429,
    C.UNAVAILABLE: 503,
    C.DEADLINE_EXCEEDED: 503,
    C.CANCELLED: 503,
    C.UNIMPLEMENTED: 501,
}
_SHOWN = {422, 404, 409, 403, 401, 429}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_STUBS = "mercato.gateway.stubs"  # in ctx.extras: (service, stub type) -> (channel, stub)

# Printable ASCII without spaces: what an HTTP and a gRPC header value both carry.
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"
BAD_IDEMPOTENCY_KEY = "Idempotency-Key must be 1 to 200 printable ASCII characters"


def valid_idempotency_key(key: str) -> bool:
    return re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is not None


# Declare it on a route that creates something, so the OpenAPI document shows the header.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Retrying with the same key and body returns the first answer.",
    ),
]


def context_of(request: Request) -> ServiceContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ServiceContext)
    return ctx


class Gateway:
    """The per-request handle on the services behind the gateway."""

    def __init__(self, request: Request):
        self.request = request
        self.ctx = context_of(request)

    def metadata(self) -> list[tuple[str, str]]:
        headers = self.request.headers
        pairs = []
        if authorization := headers.get("authorization"):
            if not authorization.isascii() or not authorization.isprintable():
                raise Problem(401, "the Authorization header is not printable ASCII")
            pairs.append(("authorization", authorization))
        key = headers.get("idempotency-key")
        if key and self.request.method in _WRITES:
            if not valid_idempotency_key(key):
                raise Problem(422, BAD_IDEMPOTENCY_KEY)
            pairs.append(("idempotency-key", key))
        # The request id the middleware accepted (or made): never an unchecked header.
        request_id = getattr(self.request.state, "request_id", None)
        if request_id:
            pairs.append(("x-request-id", request_id))
        return pairs

    async def call(
        self,
        service: str,
        stub_type: type[Any],
        method: str,
        message: Message,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        in_process: bool = True,
    ) -> Any:
        """Call ``service``'s ``method`` (with ``metadata`` beside the request's own); a
        failure is raised as a ``Problem``. ``in_process=False``: over the network even when
        the service runs in this process (see ``ServiceContext.channel``)."""
        try:
            stub = self._stub(service, stub_type, in_process)
        except LookupError:
            raise Problem(503, f"the {service} service is not available") from None
        deadline = timeout if timeout is not None else self.ctx.settings.grpc_deadline
        try:
            return await getattr(stub, method)(
                message, timeout=deadline, metadata=[*self.metadata(), *metadata]
            )
        except grpc.aio.AioRpcError as exc:
            raise problem_of(service, method, exc) from None
        finally:
            if service == "catalog" and method not in pages.READS:
                pages.pages_of(self.ctx).written()

    def _stub(self, service: str, stub_type: type[Any], in_process: bool = True) -> Any:
        # A stub builds a callable per method of the service: made once per channel, not
        # once per request.
        channel = self.ctx.channel(service, in_process=in_process)
        stubs: dict[tuple[str, type[Any]], tuple[Any, Any]] = self.ctx.extras.setdefault(_STUBS, {})
        made = stubs.get((service, stub_type))
        if made is None or made[0] is not channel:
            made = stubs[(service, stub_type)] = (channel, stub_type(channel))
        return made[1]


def problem_of(service: str, method: str, exc: grpc.aio.AioRpcError) -> Problem:
    status = STATUS.get(exc.code(), 502)
    headers = {}
    for key, value in exc.trailing_metadata() or ():
        if key == "retry-after":
            headers["Retry-After"] = value if isinstance(value, str) else value.decode()
    if status in _SHOWN:
        return Problem(status, exc.details() or None, headers=headers)
    log.warning(
        "service call failed",
        service=service,
        method=method,
        code=exc.code().name,
        details=exc.details(),
    )
    if status == 503:
        return Problem(503, f"the {service} service is not available; retry later", headers=headers)
    return Problem(status, f"the {service} service failed to answer")


async def _gateway(request: Request) -> Gateway:
    # A coroutine, not the class itself: FastAPI runs a plain callable dependency (a class
    # too) in the thread pool, a thread hand-over per request for a few attribute reads.
    return Gateway(request)


Upstream = Annotated[Gateway, Depends(_gateway)]
