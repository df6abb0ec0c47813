"""Asking the catalog over gRPC which products can be sold, and at what price now."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

import grpc
import grpc.aio

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.platform.runtime.service import ServiceContext
from mercato.services.cart.domain import CannotSell, CatalogUnavailable, Invalid, UnknownProduct
from mercato.services.cart.store import Priced

_REFUSALS = {
    grpc.StatusCode.NOT_FOUND: UnknownProduct,
    grpc.StatusCode.FAILED_PRECONDITION: CannotSell,
    grpc.StatusCode.INVALID_ARGUMENT: Invalid,
}


async def confirm(ctx: ServiceContext, items: Sequence[tuple[str, int]]) -> dict[str, Priced]:
    """The catalog's price for each (product id, quantity); raises the refusal it gives."""
    request = pb.ValidateItemsRequest(
        items=[pb.ItemRequest(product_id=p, quantity=q) for p, q in items]
    )
    try:
        stub = CatalogStub(ctx.channel("catalog"))  # type: ignore[no-untyped-call]
        reply = await stub.ValidateItems(request, timeout=ctx.settings.grpc_deadline)
    except LookupError:
        raise CatalogUnavailable("the catalog is not available; retry later") from None
    except grpc.aio.AioRpcError as exc:
        refusal = _REFUSALS.get(exc.code())
        if refusal is not None:
            raise refusal(exc.details() or "the catalog refused the product") from None
        raise CatalogUnavailable("the catalog cannot confirm products now; retry later") from None
    return {item.product_id: _priced(item) for item in reply.items}


def _priced(item: pb.ValidatedItem) -> Priced:
    try:
        price = Decimal(item.price.amount)
        as_of = datetime.fromisoformat(item.price_as_of)
    except (InvalidOperation, ValueError):
        raise CatalogUnavailable("the catalog answered a malformed price") from None
    if not price.is_finite() or price < 0:
        raise CatalogUnavailable("the catalog answered a malformed price")
    return Priced(
        product_id=item.product_id,
        name=item.name,
        price=price,
        currency=item.price.currency or "USD",
        as_of=as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC),
    )
