"""inventory's gRPC API: GetStock, CheckAvailability; Restock, RemoveStock, SetStocks,
GetStockReport (admin)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
import grpc.aio

from mercato.api.inventory.v1 import inventory_pb2 as pb
from mercato.api.inventory.v1 import inventory_pb2_grpc
from mercato.platform.auth import require_caller
from mercato.platform.idempotency import grpc_run_once
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.times import rfc3339
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.inventory import store
from mercato.services.inventory.domain import Movement, merge_lines

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
MAX_QUANTITY = 1_000_000_000
MAX_BULK = 1000
MAX_ID = 64  # the stock table's product_id
MAX_REASON = 500  # stock_movements.reason
MAX_MOVEMENTS = 100


def stock_reply(found: store.Stock) -> pb.Stock:
    available = 0 if found.retired else found.available
    return pb.Stock(
        product_id=found.product_id,
        available=available,
        reserved=found.reserved,
        in_warehouse=found.available + found.reserved,
        retired=found.retired,
    )


class InventoryApi(inventory_pb2_grpc.InventoryServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def GetStock(self, request: pb.GetStockRequest, context: Context) -> pb.Stock:
        async with self.ctx.db.connect() as conn:
            found = await store.get_stock(conn, request.product_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no stock for {request.product_id!r}")
        assert found is not None
        return stock_reply(found)

    async def CheckAvailability(
        self, request: pb.CheckAvailabilityRequest, context: Context
    ) -> pb.CheckAvailabilityReply:
        if not request.items or any(i.quantity < 1 for i in request.items):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "give at least one item, each quantity ≥ 1"
            )
        short: list[pb.ShortItem] = []
        async with self.ctx.db.connect() as conn:
            for product_id, quantity in merge_lines(
                (i.product_id, i.quantity) for i in request.items
            ):
                found = await store.get_stock(conn, product_id)
                available = 0 if found is None or found.retired else found.available
                if available < quantity:
                    short.append(
                        pb.ShortItem(product_id=product_id, requested=quantity, available=available)
                    )
        return pb.CheckAvailabilityReply(available=not short, short=short)

    async def Restock(self, request: pb.RestockRequest, context: Context) -> pb.Stock:
        caller = await require_caller(self.ctx, context, role="admin")
        await _check_change(context, request.quantity, request.reason)
        product_id, quantity = request.product_id, request.quantity

        async def work(uow: UnitOfWork) -> pb.Stock:
            found = await store.restock(
                uow, product_id, quantity, reason=request.reason or None, actor=caller.user_id
            )
            if found is None:  # why nothing was added: no such product, or a deleted one
                raise Refused(await store.get_stock(uow.conn, product_id))
            return stock_reply(found)

        return await self._change_once(context, f"Restock:{caller.user_id}", request, work)

    async def RemoveStock(self, request: pb.RemoveStockRequest, context: Context) -> pb.Stock:
        caller = await require_caller(self.ctx, context, role="admin")
        await _check_change(context, request.quantity, request.reason)
        product_id = request.product_id

        async def work(uow: UnitOfWork) -> pb.Stock:
            found = await store.take(uow.conn, product_id, request.quantity, reserve=False)
            if found is None:
                raise Refused(await store.get_stock(uow.conn, product_id))
            await store.record(
                uow.conn,
                Movement.REMOVED,
                [(product_id, request.quantity)],
                reason=request.reason or None,
                actor=caller.user_id,
            )
            await store.tell(uow, found)
            return stock_reply(found)

        return await self._change_once(context, f"RemoveStock:{caller.user_id}", request, work)

    async def _change_once(
        self,
        context: Context,
        scope: str,
        request: pb.RestockRequest | pb.RemoveStockRequest,
        work: Callable[[UnitOfWork], Awaitable[pb.Stock]],
    ) -> pb.Stock:
        """An admin's change of one product's stock, once per ``idempotency-key``; a
        ``Refused`` change aborts with why (no such product, a deleted one, too few left)."""
        try:
            # A refusal rolls back with its key, so a retry is judged afresh.
            return await grpc_run_once(
                self.ctx,
                context,
                scope=f"inventory.{scope}",
                request=request,
                work=work,
                decode=pb.Stock.FromString,
            )
        except Refused as refused:
            found = refused.stock
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no stock for {request.product_id!r}")
        assert found is not None
        reason = "the product was deleted" if found.retired else f"only {found.available} left"
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, reason)
        raise AssertionError("abort returned")  # pragma: no cover

    async def SetStocks(self, request: pb.SetStocksRequest, context: Context) -> pb.SetStocksReply:
        await require_caller(self.ctx, context, role="admin")
        ids = sorted(set(request.product_ids))
        if not 1 <= len(ids) <= MAX_BULK or not all(0 < len(i) <= MAX_ID for i in ids):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"1 to {MAX_BULK} product ids of 1 to {MAX_ID}"
            )
        if not 0 <= request.quantity <= MAX_QUANTITY:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"quantity must be 0..{MAX_QUANTITY}"
            )
        async with self.ctx.transaction() as uow:
            await store.put_stocks(uow, ids, request.quantity)
            await store.record(uow.conn, Movement.SET, [(i, request.quantity) for i in ids])
        return pb.SetStocksReply(count=len(ids))

    async def GetStockReport(
        self, request: pb.GetStockReportRequest, context: Context
    ) -> pb.StockReport:
        await require_caller(self.ctx, context, role="admin")
        limit = request.limit or 20
        if not 1 <= limit <= MAX_MOVEMENTS:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 1..{MAX_MOVEMENTS}"
            )
        async with self.ctx.db.connect() as conn:
            found = await store.get_stock(conn, request.product_id)
            moved = await store.movements(conn, request.product_id, limit) if found else []
            threshold = await store.threshold(conn)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no stock for {request.product_id!r}")
        assert found is not None
        return pb.StockReport(
            stock=stock_reply(found),
            low_stock_threshold=threshold,
            movements=[
                pb.Movement(
                    kind=m.kind,
                    quantity=m.quantity,
                    order_id=m.order_id or "",
                    reason=m.reason or "",
                    actor=m.actor or "",
                    at=rfc3339(m.at),
                )
                for m in moved
            ],
        )


async def _check_change(context: Context, quantity: int, reason: str) -> None:
    """An admin's change: 1..MAX_QUANTITY units, a reason of at most MAX_REASON characters."""
    if not 1 <= quantity <= MAX_QUANTITY:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"quantity must be 1..{MAX_QUANTITY}")
    if len(reason) > MAX_REASON:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"reason: at most {MAX_REASON} characters"
        )


class Refused(Exception):
    """Restock or RemoveStock changed nothing: ``stock`` says why (None: unknown product)."""

    def __init__(self, stock: store.Stock | None):
        super().__init__("stock not removed")
        self.stock = stock
