"""Where an order's prices come from: catalog's ``ValidateItems`` (the current price of each
product, and whether it is still sold). A port with a fake twin for tests (``install_prices``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Protocol

import grpc
import grpc.aio

from mercato.platform.runtime.service import ServiceContext

DEADLINE = 3.0  # seconds for one ValidateItems call
_EXTRA = "order.prices"


class PricingError(Exception):
    pass


class UnknownProduct(PricingError):
    pass


class NotForSale(PricingError):
    """Deleted, inactive, or a quantity the catalog refuses."""


class PricesUnavailable(PricingError):
    pass


@dataclass(frozen=True, slots=True)
class Priced:
    lines: list[tuple[str, int, Decimal]]
    currency: str


class PriceList(Protocol):
    async def price(self, items: Sequence[tuple[str, int]]) -> Priced: ...


class CatalogPrices:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def price(self, items: Sequence[tuple[str, int]]) -> Priced:
        from mercato.api.catalog.v1 import catalog_pb2, catalog_pb2_grpc

        try:
            stub = catalog_pb2_grpc.CatalogStub(self.ctx.channel("catalog"))  # type: ignore[no-untyped-call]
        except LookupError as exc:
            raise PricesUnavailable("the catalog service is not available") from exc
        request = catalog_pb2.ValidateItemsRequest(
            items=[catalog_pb2.ItemRequest(product_id=p, quantity=q) for p, q in items]
        )
        try:
            reply = await stub.ValidateItems(request, timeout=DEADLINE)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.NOT_FOUND:
                raise UnknownProduct(exc.details() or "unknown product") from exc
            if code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT):
                raise NotForSale(exc.details() or "not for sale") from exc
            raise PricesUnavailable(f"the catalog did not answer: {code.name}") from exc
        currencies = {item.price.currency or "USD" for item in reply.items}
        if len(currencies) > 1:
            raise NotForSale("the products are priced in different currencies")
        try:
            lines = [(i.product_id, int(i.quantity), Decimal(i.price.amount)) for i in reply.items]
        except InvalidOperation as exc:
            raise PricesUnavailable("the catalog answered a price that is not a number") from exc
        return Priced(lines, currencies.pop() if currencies else "USD")


# The event handlers are plain functions of (event, unit of work); they find the service's
# price list here (one order service per process).
_current: PriceList | None = None


def install_prices(ctx: ServiceContext, prices: PriceList) -> None:
    """Use another price list in this service (tests: a fixed one)."""
    global _current
    ctx.extras[_EXTRA] = _current = prices


def price_list(ctx: ServiceContext) -> PriceList:
    prices = ctx.extras.get(_EXTRA)
    if prices is None:
        prices = CatalogPrices(ctx)
        install_prices(ctx, prices)
    return prices


def current_prices() -> PriceList:
    if _current is None:
        raise PricesUnavailable("the order service has not started")
    return _current
