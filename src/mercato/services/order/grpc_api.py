"""order's gRPC API. Every call checks the caller's token; a customer reaches only their own
orders (someone else's is NOT_FOUND, so ids reveal nothing)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.common.v1 import common_pb2
from mercato.api.order.v1 import order_pb2 as pb
from mercato.api.order.v1 import order_pb2_grpc
from mercato.contracts.events import Address, PaymentMethod
from mercato.platform.auth import Caller, require_caller
from mercato.platform.idempotency import grpc_run_once
from mercato.platform.ids import made_within, new_id
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.order import drafts, orders, store
from mercato.services.order.domain import (
    MAX_QUANTITY,
    CannotCancel,
    CannotChange,
    CustomerCancel,
    InvalidOrder,
    Outcome,
    Status,
    Until,
    check_address,
    outcome,
)
from mercato.services.order.drafts import NoSuchDraft
from mercato.services.order.orders import OrderExists
from mercato.services.order.pricing import (
    NotForSale,
    Priced,
    PricesUnavailable,
    UnknownProduct,
    price_list,
)
from mercato.services.order.store import Stored
from mercato.services.order.views import (
    address_of,
    draft_of,
    draft_reply,
    order_reply,
    payment_of,
)
from mercato.services.order.watch import Seen, watch

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
# 128: room for a compatibility route's client-chosen id (64) behind its user's scope.
ORDER_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
MAX_WAIT = 60.0
APPEAR = 2.0  # seconds WatchOrder waits for an order not there yet (the gateway: 5 s)
# Only an id made this recently (a checkout's: the cart gives out UUIDv7 ids) may name an
# order still on its way; any other unknown id is NOT_FOUND at once.
PENDING = 120.0
MAX_PAGE_SIZE = 100
MAX_DRAFTS = 10_000
CANCELLED_SPELLINGS = {"CANCELLED", "CANCELED"}
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


_UNTIL = {u.value.lower(): u for u in Until}  # WaitOrder's `until`, in any case


class OrdersApi(order_pb2_grpc.OrdersServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def CreateOrder(self, request: pb.CreateOrderRequest, context: Context) -> pb.Order:
        caller = await require_caller(self.ctx, context)
        user_id = request.user_id or caller.user_id
        if not caller.may_act_for(user_id):
            await abort(context, PERMISSION_DENIED, "only an admin orders for others")
        if request.order_id and not ORDER_ID.match(request.order_id):
            await abort(context, INVALID_ARGUMENT, "orderId: 1..128 of A-Z a-z 0-9 . _ : -")
        try:
            wanted = _wanted(request)
            payment, address = _terms(request)
        except InvalidOrder as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        priced = await self._price(wanted, context)

        async def work(uow: UnitOfWork) -> pb.Order:
            stored = await orders.place_order(
                uow,
                request.order_id or new_id(),
                user_id,
                priced.lines,
                currency=priced.currency,
                payment=payment,
                shipping_address=address,
            )
            return order_reply(stored, await store.history(uow.conn, stored.order.order_id))

        # A retry tokenizes the card again (a new token for the same card): the token is left
        # out of the fingerprint, so the retry still gets the first answer.
        fingerprinted = pb.CreateOrderRequest()
        fingerprinted.CopyFrom(request)
        fingerprinted.payment.token = ""
        try:
            return await grpc_run_once(
                self.ctx,
                context,
                scope=f"order.CreateOrder:{caller.user_id}",
                request=fingerprinted,
                work=work,
                decode=pb.Order.FromString,
            )
        except InvalidOrder as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except OrderExists:
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, "that order id is taken")

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.Order:
        caller = await require_caller(self.ctx, context)
        async with self.ctx.db.connect() as conn:
            stored = await self._own(conn, caller, request.order_id, context)
            return order_reply(stored, await store.history(conn, request.order_id))

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Context
    ) -> pb.ListOrdersReply:
        caller = await require_caller(self.ctx, context)
        user_id: str | None = request.user_id or None
        if not caller.is_admin:
            if user_id not in (None, caller.user_id):
                await abort(context, grpc.StatusCode.PERMISSION_DENIED, "only your own orders")
            user_id = caller.user_id
        status = None
        if request.status:
            try:
                status = Status(request.status.upper())
            except ValueError:
                await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "unknown status")
        number = request.page.page or 1
        size = request.page.page_size or 20
        if number < 1 or not 1 <= size <= MAX_PAGE_SIZE:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"page ≥ 1, pageSize 1..{MAX_PAGE_SIZE}"
            )
        async with self.ctx.db.connect() as conn:
            found, total = await store.page(
                conn, user_id=user_id, status=status, number=number, size=size
            )
        return pb.ListOrdersReply(
            orders=[order_reply(s) for s in found],
            page=common_pb2.PageInfo(page=number, page_size=size, total=total),
        )

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Context) -> pb.Order:
        caller = await require_caller(self.ctx, context)
        async with self.ctx.db.connect() as conn:
            await self._own(conn, caller, request.order_id, context)
        reason = request.reason.strip()[:500] or (
            "cancelled by the customer" if not caller.is_admin else "cancelled by an administrator"
        )
        return await self._cancel(request.order_id, reason, context)

    async def UpdateOrder(self, request: pb.UpdateOrderRequest, context: Context) -> pb.Order:
        caller = await require_caller(self.ctx, context)
        async with self.ctx.db.connect() as conn:
            stored = await self._own(conn, caller, request.order_id, context)
        current = stored.order
        cancel = request.HasField("status") and request.status.upper() in CANCELLED_SPELLINGS
        if request.HasField("status") and not cancel and request.status.upper() != current.status:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "the status follows the saga; only a cancellation can be asked for",
            )
        asked = {(i.product_id, i.quantity) for i in request.items}
        if request.items and asked != {(x.product_id, x.quantity) for x in current.lines}:
            await abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "items cannot change once the order is placed; cancel it and order again",
            )
        if not caller.is_admin and (request.HasField("shipping_address") or not cancel):
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, "only an admin changes orders")
        if request.HasField("shipping_address"):
            try:
                async with self.ctx.transaction() as uow:
                    await _readdress(uow, request)
            except (InvalidOrder, CannotChange) as exc:
                code = grpc.StatusCode.INVALID_ARGUMENT
                if isinstance(exc, CannotChange):
                    code = grpc.StatusCode.FAILED_PRECONDITION
                await abort(context, code, str(exc))
        if cancel:
            reason = request.reason.strip()[:500] or "cancelled by an administrator"
            return await self._cancel(request.order_id, reason, context)
        return await self.GetOrder(pb.GetOrderRequest(order_id=request.order_id), context)

    async def WaitOrder(self, request: pb.WaitOrderRequest, context: Context) -> pb.WaitOrderReply:
        """An order not there yet (a checkout's, made from its event a moment after the cart
        answered) is waited for within the timeout; NOT_FOUND if it does not appear, or is
        someone else's."""
        caller = await require_caller(self.ctx, context)
        try:
            until = _UNTIL[request.until.lower()]
        except KeyError:
            await abort(
                context, INVALID_ARGUMENT, "until: PAID, RESERVED, COMPLETED, terminal or settled"
            )
        timeout = request.timeout_seconds
        if not 0 <= timeout <= MAX_WAIT:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"timeout: 0..{MAX_WAIT:g} s")
        deadline = asyncio.get_running_loop().time() + timeout
        settling = until is Until.SETTLED
        changes = self._watch(caller, request.order_id, appear=timeout, settling=settling)
        async with contextlib.aclosing(changes):
            # The first read is made even with timeout 0: the order as it is now.
            last = await anext(changes, None)
            if last is None:
                await abort(context, grpc.StatusCode.NOT_FOUND, "no such order")
            result = outcome(last.stored.order, until)
            if result is Outcome.PENDING:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        async for last in changes:
                            result = outcome(last.stored.order, until)
                            if result is not Outcome.PENDING:
                                break
        answer = "timeout" if result is Outcome.PENDING else result.value
        return pb.WaitOrderReply(outcome=answer, order=await self._reply(last))

    async def WatchOrder(
        self, request: pb.WatchOrderRequest, context: Context
    ) -> AsyncIterator[pb.Order]:
        """An order not there yet is waited for up to ``APPEAR`` seconds (NOT_FOUND after)."""
        caller = await require_caller(self.ctx, context)
        remaining = context.time_remaining()
        appear = APPEAR if remaining is None else max(0.0, min(APPEAR, remaining - 1))
        found = False
        async with contextlib.aclosing(self._watch(caller, request.order_id, appear)) as changes:
            async for seen in changes:
                found = True
                yield await self._reply(seen)
        if not found:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such order")

    # -- drafts (the WDM API's orders before checkout) -------------------------------------
    async def CreateDraft(self, request: pb.CreateDraftRequest, context: Context) -> pb.Draft:
        caller = await require_caller(self.ctx, context)
        user_id = request.user_id or caller.user_id
        if not caller.may_act_for(user_id):
            await abort(context, PERMISSION_DENIED, "only an admin makes drafts for others")
        if len(user_id) > 200:
            await abort(context, INVALID_ARGUMENT, "userId: at most 200 characters")
        async with self.ctx.transaction() as uow:
            draft = await drafts.create(uow, new_id(), user_id)
        return draft_reply(draft)

    async def AddDraftItem(self, request: pb.AddDraftItemRequest, context: Context) -> pb.Draft:
        caller = await require_caller(self.ctx, context)
        if not request.product_id or len(request.product_id) > 200:
            await abort(context, INVALID_ARGUMENT, "productId: 1..200 characters")
        if not 1 <= request.quantity <= MAX_QUANTITY:
            await abort(context, INVALID_ARGUMENT, f"quantity must be 1..{MAX_QUANTITY}")
        async with self.ctx.db.connect() as conn:  # an unknown order before a catalog call
            draft = await drafts.load(conn, request.order_id) if request.order_id else None
        if draft is None or not caller.may_act_for(draft.user_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such order")
        if draft.placed:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "already checked out")
        priced = await self._price([(request.product_id, int(request.quantity))], context)
        try:
            async with self.ctx.transaction() as uow:
                draft = await drafts.add_item(
                    uow, caller, request.order_id, priced.lines[0], priced.currency
                )
        except NoSuchDraft:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such order")
        except InvalidOrder as exc:
            await abort(context, INVALID_ARGUMENT, str(exc))
        except CannotChange as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return draft_reply(draft)

    async def GetDraft(self, request: pb.GetDraftRequest, context: Context) -> pb.Draft:
        caller = await require_caller(self.ctx, context)
        order_id = request.order_id
        async with self.ctx.db.connect() as conn:
            draft = await drafts.load(conn, order_id) if order_id else None
            stored = await store.load(conn, order_id) if order_id else None
        if draft is None and stored is not None:
            draft = drafts.of_order(stored.order)
        if draft is None or not caller.may_act_for(draft.user_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such order")
        return draft_reply(draft, order_reply(stored) if stored and draft.placed else None)

    async def PlaceDraft(self, request: pb.PlaceDraftRequest, context: Context) -> pb.Order:
        caller = await require_caller(self.ctx, context)
        try:
            payment, address = _terms(request)
            async with self.ctx.transaction() as uow:
                stored = await drafts.place(
                    uow, caller, request.order_id, payment=payment, shipping_address=address
                )
                history = await store.history(uow.conn, request.order_id)
        except NoSuchDraft:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such order")
        except InvalidOrder as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except OrderExists:
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, "an order took that id")
        return order_reply(stored, history)

    async def CreateDrafts(
        self, request: pb.CreateDraftsRequest, context: Context
    ) -> pb.CreateDraftsReply:
        caller = await require_caller(self.ctx, context)
        if not caller.is_admin:
            await abort(context, PERMISSION_DENIED, "only an admin makes drafts in bulk")
        if not 1 <= len(request.drafts) <= MAX_DRAFTS:
            await abort(context, INVALID_ARGUMENT, f"1..{MAX_DRAFTS} drafts")
        try:
            wanted = [draft_of(spec) for spec in request.drafts]
            async with self.ctx.transaction() as uow:
                written, kept = await drafts.create_many(uow, wanted)
        except InvalidOrder as exc:
            await abort(context, INVALID_ARGUMENT, str(exc))
        return pb.CreateDraftsReply(written=written, kept=kept)

    # -- helpers ---------------------------------------------------------------------------
    async def _price(self, wanted: list[tuple[str, int]], context: Context) -> Priced:
        try:
            return await price_list(self.ctx).price(wanted)
        except UnknownProduct as exc:
            await abort(context, grpc.StatusCode.NOT_FOUND, str(exc))
        except NotForSale as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except PricesUnavailable as exc:
            await abort(context, grpc.StatusCode.UNAVAILABLE, str(exc))

    async def _own(self, conn: Any, caller: Caller, order_id: str, context: Context) -> Stored:
        stored = await store.load(conn, order_id) if order_id else None
        if stored is None or not caller.may_act_for(stored.order.user_id):
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such order")
        return stored

    def _watch(
        self, caller: Caller, order_id: str, appear: float, *, settling: bool = False
    ) -> AsyncGenerator[Seen, None]:
        """The caller's order as it changes (see ``watch``; past its final status until it is
        settled, if ``settling``): nothing if it is someone else's or is not there within
        ``appear`` seconds."""

        async def read() -> Stored | None:
            async with self.ctx.db.connect() as conn:
                return await store.load(conn, order_id)

        def mine(stored: Stored) -> bool:
            return caller.may_act_for(stored.order.user_id)

        if not made_within(order_id, PENDING):
            appear = 0.0  # not an id a checkout gave out lately: no order is on its way
        return watch(order_id, read, visible=mine, appear=appear, settling=settling)

    async def _reply(self, seen: Seen) -> pb.Order:
        """The order with its history (read unless the watch was told all of it)."""
        history = seen.history
        if history is None:
            async with self.ctx.db.connect() as conn:
                history = tuple(await store.history(conn, seen.stored.order.order_id))
        return order_reply(seen.stored, history)

    async def _cancel(self, order_id: str, reason: str, context: Context) -> pb.Order:
        try:
            async with self.ctx.transaction() as uow:
                stored = await orders.apply(uow, order_id, CustomerCancel(reason))
                assert stored is not None  # orders are never deleted
                history = await store.history(uow.conn, order_id)
        except CannotCancel as exc:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return order_reply(stored, history)


def _terms(
    request: pb.CreateOrderRequest | pb.PlaceDraftRequest,
) -> tuple[PaymentMethod | None, Address | None]:
    """How it is paid (None: the wallet) and where it goes, as asked."""
    payment = payment_of(request.payment) if request.HasField("payment") else None
    address = None
    if request.HasField("shipping_address"):
        address = check_address(address_of(request.shipping_address))
    return payment, address


def _wanted(request: pb.CreateOrderRequest) -> list[tuple[str, int]]:
    if not request.items:
        raise InvalidOrder("an order needs at least one item")
    wanted = []
    for item in request.items:
        if not item.product_id or len(item.product_id) > 200:
            raise InvalidOrder("every item needs a productId (at most 200 characters)")
        if not 1 <= item.quantity <= MAX_QUANTITY:
            raise InvalidOrder(f"quantity of {item.product_id} must be 1..{MAX_QUANTITY}")
        wanted.append((item.product_id, int(item.quantity)))
    return wanted


async def _readdress(uow: UnitOfWork, request: pb.UpdateOrderRequest) -> None:
    moved = await orders.change_address(uow, request.order_id, address_of(request.shipping_address))
    assert moved is not None  # orders are never deleted
