"""cart's gRPC API. Every call acts for the caller (or, for an admin, the user it names).

Catalog calls happen before the database transaction, never inside it: a slow catalog must
not hold the cart's write lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.cart.v1 import cart_pb2 as pb
from mercato.api.cart.v1 import cart_pb2_grpc
from mercato.api.common.v1.common_pb2 import Money
from mercato.platform.auth import require_caller
from mercato.platform.idempotency import grpc_run_once
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.times import rfc3339
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.cart import domain, store
from mercato.services.cart.catalog_client import confirm
from mercato.services.cart.domain import (
    CannotSell,
    CartChanged,
    CartRefused,
    CatalogUnavailable,
    Invalid,
    NotInCart,
    UnknownProduct,
)

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_CODES: dict[type[CartRefused], grpc.StatusCode] = {
    Invalid: grpc.StatusCode.INVALID_ARGUMENT,
    NotInCart: grpc.StatusCode.NOT_FOUND,
    UnknownProduct: grpc.StatusCode.NOT_FOUND,
    CannotSell: grpc.StatusCode.FAILED_PRECONDITION,
    CartChanged: grpc.StatusCode.ABORTED,
    CatalogUnavailable: grpc.StatusCode.UNAVAILABLE,
}


async def refuse(context: Context, exc: CartRefused) -> NoReturn:
    code = next(c for kind, c in _CODES.items() if isinstance(exc, kind))
    await context.abort(code, str(exc))
    raise AssertionError("abort returned")  # pragma: no cover


def _money(amount: Any, currency: str) -> Money:
    return Money(amount=domain.money_text(amount), currency=currency)


def cart_view(state: store.CartState) -> pb.CartView:
    currencies = sorted({line.currency for line in state.lines})
    currency = currencies[0] if currencies else domain.DEFAULT_CURRENCY
    return pb.CartView(
        cart_id=state.cart_id or "",
        user_id=state.user_id,
        items=[
            pb.CartLine(
                product_id=line.product_id,
                name=line.name,
                quantity=line.quantity,
                price=_money(line.price, line.currency),
                line_total=_money(line.total, line.currency),
            )
            for line in state.lines
        ],
        total=_money(domain.total_of(state.lines), currency),
        item_count=sum(line.quantity for line in state.lines),
        updated_at=rfc3339(state.touched_at) if state.touched_at else "",
    )


def _now() -> datetime:
    return datetime.now(UTC)


class CartApi(cart_pb2_grpc.CartServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def _owner(self, user_id: str, context: Context) -> str:
        caller = await require_caller(self.ctx, context)
        owner = user_id or caller.user_id
        if not caller.may_act_for(owner):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "not your cart")
        return owner

    async def GetCart(self, request: pb.GetCartRequest, context: Context) -> pb.CartView:
        owner = await self._owner(request.user_id, context)
        async with self.ctx.db.connect() as conn:
            return cart_view(await store.view(conn, owner))

    async def AddItem(self, request: pb.AddItemRequest, context: Context) -> pb.CartView:
        owner = await self._owner(request.user_id, context)
        try:
            product_id = domain.check_product_id(request.product_id)
            quantity = domain.check_quantity(request.quantity)
            priced = (await confirm(self.ctx, [(product_id, quantity)])).get(product_id)
            if priced is None:
                raise CatalogUnavailable("the catalog did not price the product")

            async def work(uow: UnitOfWork) -> pb.CartView:
                return cart_view(await store.add_item(uow, owner, priced, quantity, _now()))

            return await grpc_run_once(
                self.ctx,
                context,
                scope=f"cart.AddItem:{owner}",
                request=request,
                work=work,
                decode=pb.CartView.FromString,
            )
        except CartRefused as exc:
            await refuse(context, exc)

    async def UpdateItem(self, request: pb.UpdateItemRequest, context: Context) -> pb.CartView:
        owner = await self._owner(request.user_id, context)
        try:
            product_id = domain.check_product_id(request.product_id)
            async with self.ctx.transaction() as uow:
                state = await store.set_quantity(uow, owner, product_id, request.quantity, _now())
        except CartRefused as exc:
            await refuse(context, exc)
        return cart_view(state)

    async def RemoveItem(self, request: pb.RemoveItemRequest, context: Context) -> pb.CartView:
        owner = await self._owner(request.user_id, context)
        try:
            product_id = domain.check_product_id(request.product_id)
            async with self.ctx.transaction() as uow:
                state = await store.remove_item(uow, owner, product_id, _now())
        except CartRefused as exc:
            await refuse(context, exc)
        return cart_view(state)

    async def Checkout(self, request: pb.CheckoutRequest, context: Context) -> pb.CheckoutReply:
        owner = await self._owner(request.user_id, context)
        try:
            p, a = request.payment, request.shipping_address
            payment = domain.check_payment(p.method, p.token, p.last4)
            address = domain.check_address(
                a.name,
                a.line1,
                a.line2 if a.HasField("line2") else None,
                a.city,
                a.postal_code,
                a.country,
            )
            confirmed = await self._confirm_lines(owner)

            async def work(uow: UnitOfWork) -> pb.CheckoutReply:
                order_id = await store.checkout(uow, owner, confirmed, payment, address, _now())
                return pb.CheckoutReply(order_id=order_id)

            # A card token is minted afresh for every request at the gateway, so a retry
            # carries another one: the fingerprint leaves it out.
            same = pb.CheckoutRequest()
            same.CopyFrom(request)
            same.payment.token = ""
            return await grpc_run_once(
                self.ctx,
                context,
                scope=f"cart.Checkout:{owner}",
                request=same,
                work=work,
                decode=pb.CheckoutReply.FromString,
            )
        except CartRefused as exc:
            await refuse(context, exc)

    async def _confirm_lines(self, owner: str) -> dict[str, store.Priced]:
        """The catalog's current price of every line (none for an empty cart)."""
        async with self.ctx.db.connect() as conn:
            state = await store.view(conn, owner)
        if not state.lines:
            return {}
        try:
            return await confirm(self.ctx, [(x.product_id, x.quantity) for x in state.lines])
        except (UnknownProduct, CannotSell) as exc:
            raise CannotSell(f"{exc}; remove it from the cart to check out") from None
