"""A product's stock as the warehouse sees it, and restocking it (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from mercato.api.inventory.v1 import inventory_pb2 as pb
from mercato.api.inventory.v1.inventory_pb2_grpc import InventoryStub
from mercato.services.gateway.inputs import Count, Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.security import AdminCaller
from mercato.services.gateway.upstream import IdempotencyKey, Upstream

router = APIRouter(prefix="/api/v1/inventory", tags=["inventory"], responses=PROBLEM_RESPONSES)

MAX_RESTOCK = 1_000_000_000  # inventory holds the same limit
ProductId = Annotated[str, Path(min_length=1, max_length=64)]


class StockMovement(BaseModel):
    kind: str = Field(
        description="stocked, set, restocked, removed, reserved, released, deducted, returned "
        "or retired"
    )
    quantity: int = Field(description="The units moved (stocked, set: what became available)")
    orderId: str | None
    reason: str | None
    by: str | None = Field(description="The admin who made the change")
    at: str


class Stock(BaseModel):
    productId: str
    onHand: int = Field(description="In the warehouse: available + reserved")
    reserved: int = Field(description="On hand, held for orders not yet delivered")
    available: int = Field(description="Free to sell (0 for a deleted product)")
    lowStockThreshold: int
    low: bool = Field(description="Available below the threshold (StockLow / OutOfStock)")
    retired: bool = Field(description="The product was deleted")
    movements: list[StockMovement] = Field(description="The last changes, newest first")


class Restock(Input):
    quantity: Annotated[Count, Field(ge=1, le=MAX_RESTOCK)]
    reason: Annotated[str, Field(min_length=1, max_length=500)] | None = None


async def _report(
    upstream: Upstream, product_id: str, limit: int = 20, stock: pb.Stock | None = None
) -> Stock:
    """The product's stock report; ``stock``: these figures instead of the report's (a
    restock's answer, the same on every retry with its key)."""
    message = pb.GetStockReportRequest(product_id=product_id, limit=limit)
    reply = await upstream.call("inventory", InventoryStub, "GetStockReport", message)
    stock = stock or reply.stock
    threshold = reply.low_stock_threshold
    return Stock(
        productId=stock.product_id,
        onHand=stock.in_warehouse,
        reserved=stock.reserved,
        available=stock.available,
        lowStockThreshold=threshold,
        low=stock.available < threshold,
        retired=stock.retired,
        movements=[
            StockMovement(
                kind=m.kind,
                quantity=m.quantity,
                orderId=m.order_id or None,
                reason=m.reason or None,
                by=m.actor or None,
                at=m.at,
            )
            for m in reply.movements
        ],
    )


@router.get("/{productId}", summary="A product's stock and its last movements (admin)")
async def get_stock(
    productId: ProductId,
    caller: AdminCaller,
    upstream: Upstream,
    movements: Annotated[int, Query(ge=1, le=100, description="How many movements")] = 20,
) -> Stock:
    return await _report(upstream, productId, movements)


@router.post(
    "/{productId}/restock",
    summary="Add units to a product's stock (admin)",
    description="Publishes StockUpdated. 404 for an unknown product, 422 for a deleted one. "
    "The figures are those right after this restock; with an Idempotency-Key, a retry "
    "restocks nothing more and gets the same figures (the movements are the latest).",
)
async def restock(
    productId: ProductId,
    body: Restock,
    caller: AdminCaller,
    upstream: Upstream,
    key: IdempotencyKey = None,
) -> Stock:
    message = pb.RestockRequest(product_id=productId, quantity=body.quantity, reason=body.reason)
    stock = await upstream.call("inventory", InventoryStub, "Restock", message)
    return await _report(upstream, productId, stock=stock)
