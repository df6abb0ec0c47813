"""catalog's gRPC API. Reads need no token (anyone may browse); writes need an admin."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1 import catalog_pb2_grpc
from mercato.api.common.v1 import common_pb2
from mercato.contracts.events import ProductViewed
from mercato.platform.auth import (
    AuthError,
    Caller,
    KeysUnavailable,
    bearer_token,
    require_caller,
    verifier_for,
)
from mercato.platform.idempotency import grpc_run_once
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.times import rfc3339
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.catalog import domain, store
from mercato.services.catalog.domain import Invalid
from mercato.services.catalog.store import Product, ProductNotFound
from mercato.services.catalog.versions import VersionWatch

MAX_SESSION_ID = 200
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
MAX_VALIDATE = 500
MAX_PUT = 1000
SORTS = {
    pb.PRODUCT_SORT_UNSPECIFIED: "name",
    pb.PRODUCT_SORT_NAME: "name",
    pb.PRODUCT_SORT_NAME_DESC: "-name",
    pb.PRODUCT_SORT_PRICE: "price",
    pb.PRODUCT_SORT_PRICE_DESC: "-price",
    pb.PRODUCT_SORT_NEWEST: "newest",
    pb.PRODUCT_SORT_OLDEST: "oldest",
}


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


def product_reply(p: Product) -> pb.Product:
    return pb.Product(
        product_id=p.product_id,
        name=p.name,
        description=p.description,
        category=p.category,
        price=common_pb2.Money(amount=str(p.price), currency=p.currency),
        active=p.active,
        available=p.available,
        created_at=rfc3339(p.created_at),
        updated_at=rfc3339(p.updated_at),
    )


def _metadata(context: Context, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


class CatalogApi(catalog_pb2_grpc.CatalogServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.versions = VersionWatch(ctx.db, ctx.settings.catalog_watch_interval)

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: Context
    ) -> pb.ListProductsReply:
        if request.include_inactive:
            await require_caller(self.ctx, context, role="admin")
        try:
            sort = SORTS.get(request.sort)
            if sort is None:
                raise Invalid("unknown sort")
            page = domain.check_page(request.page.page, request.page.page_size)
            category = domain.check_category(request.category)
            text = request.query.strip()
            if len(text) > 200:
                raise Invalid("a search text has at most 200 characters")
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        async with self.ctx.db.connect() as conn:
            version = await store.current_version(conn)
            if request.HasField("if_version") and request.if_version == version:
                return pb.ListProductsReply(version=version, unchanged=True)
            found, total = await store.search(
                conn, text, category, sort, page, include_inactive=request.include_inactive
            )
        return pb.ListProductsReply(
            products=[product_reply(p) for p in found],
            page=common_pb2.PageInfo(page=page.number, page_size=page.size, total=total),
            version=version,
        )

    async def WatchVersion(
        self, request: pb.WatchVersionRequest, context: Context
    ) -> AsyncIterator[pb.CatalogVersion]:
        if self.versions.interval <= 0:
            await abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, "MERCATO_CATALOG_WATCH_INTERVAL is 0"
            )
        try:
            async with contextlib.aclosing(self.versions.changes()) as changes:
                async for version in changes:
                    yield pb.CatalogVersion(version=version)
        except Exception:  # the version could not be read (logged by the watch)
            await abort(context, grpc.StatusCode.UNAVAILABLE, "the catalog version is unreadable")

    async def GetProduct(self, request: pb.GetProductRequest, context: Context) -> pb.Product:
        viewer = await self._viewer(context)
        if len(request.session_id) > MAX_SESSION_ID:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "session id too long")
        try:
            async with self.ctx.transaction() as uow:
                product = await store.get(uow.conn, request.product_id)
                if not product.active and not (viewer and viewer.is_admin):
                    raise ProductNotFound(request.product_id)
                uow.publish(
                    ProductViewed(
                        productId=product.product_id,
                        userId=viewer.user_id if viewer else None,
                        sessionId=request.session_id or None,
                    ),
                    subject=product.product_id,
                )
        except ProductNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such product")
        return product_reply(product)

    async def _viewer(self, context: Context) -> Caller | None:
        """Who views, if a valid token came along; browsing needs none, so a bad one is
        ignored rather than refused."""
        authorization = _metadata(context, "authorization")
        if not authorization:
            return None
        try:
            caller = await verifier_for(self.ctx).verify(bearer_token(authorization))
        except (AuthError, KeysUnavailable):
            return None
        return caller

    async def CreateProduct(self, request: pb.CreateProductRequest, context: Context) -> pb.Product:
        await require_caller(self.ctx, context, role="admin")
        try:
            new = store.NewProduct(
                name=domain.check_name(request.name),
                description=domain.check_description(request.description),
                category=domain.check_category(request.category),
                price=domain.check_price(request.price.amount),
                currency=domain.check_currency(request.price.currency or "USD"),
                quantity=domain.check_quantity(request.quantity),
                active=request.active if request.HasField("active") else True,
            )
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

        async def work(uow: UnitOfWork) -> pb.Product:
            return product_reply(await store.create(uow, new))

        # The same idempotency-key and request give the first product back, not a second one.
        return await grpc_run_once(
            self.ctx,
            context,
            scope="catalog.CreateProduct",
            request=request,
            work=work,
            decode=pb.Product.FromString,
        )

    async def UpdateProduct(self, request: pb.UpdateProductRequest, context: Context) -> pb.Product:
        await require_caller(self.ctx, context, role="admin")
        changes: dict[str, Any] = {}
        try:
            if request.HasField("name"):
                changes["name"] = domain.check_name(request.name)
            if request.HasField("description"):
                changes["description"] = domain.check_description(request.description)
            if request.HasField("category"):
                changes["category"] = domain.check_category(request.category)
            if request.HasField("active"):
                changes["active"] = request.active
            if request.HasField("price"):
                changes["price"] = domain.check_price(request.price.amount)
                if request.price.currency:
                    changes["currency"] = domain.check_currency(request.price.currency)
            quantity = (
                domain.check_quantity(request.quantity) if request.HasField("quantity") else None
            )
            if not changes and quantity is None:
                raise Invalid("nothing to change")
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            async with self.ctx.transaction() as uow:
                product = await store.update(uow, request.product_id, changes, quantity)
        except ProductNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such product")
        return product_reply(product)

    async def DeleteProduct(
        self, request: pb.DeleteProductRequest, context: Context
    ) -> pb.DeleteProductReply:
        await require_caller(self.ctx, context, role="admin")
        try:
            async with self.ctx.transaction() as uow:
                await store.delete(uow, request.product_id)
        except ProductNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such product")
        return pb.DeleteProductReply()

    async def ValidateItems(
        self, request: pb.ValidateItemsRequest, context: Context
    ) -> pb.ValidateItemsReply:
        if not 1 <= len(request.items) <= MAX_VALIDATE:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"1 to {MAX_VALIDATE} items")
        try:
            for item in request.items:
                domain.check_item_quantity(item.quantity)
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        ids = sorted({item.product_id for item in request.items})
        async with self.ctx.db.connect() as conn:
            live, known = await store.look_up(conn, ids)
        replies = []
        for item in request.items:
            p = live.get(item.product_id)
            if item.product_id not in known:
                await abort(context, grpc.StatusCode.NOT_FOUND, f"no product {item.product_id}")
            if p is None or not p.active:
                await abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"product {item.product_id} is no longer sold",
                )
            replies.append(
                pb.ValidatedItem(
                    product_id=p.product_id,
                    name=p.name,
                    quantity=item.quantity,
                    price=common_pb2.Money(amount=str(p.price), currency=p.currency),
                    price_as_of=rfc3339(p.updated_at),
                )
            )
        return pb.ValidateItemsReply(items=replies)

    async def PutProducts(
        self, request: pb.PutProductsRequest, context: Context
    ) -> pb.PutProductsReply:
        await require_caller(self.ctx, context, role="admin")
        if not 1 <= len(request.products) <= MAX_PUT:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"1 to {MAX_PUT} products")
        wanted: dict[str, store.NewProduct] = {}
        try:
            for item in request.products:
                wanted[domain.check_product_id(item.product_id)] = store.NewProduct(
                    name=domain.check_name(item.name),
                    description="",
                    category="",
                    price=domain.check_price(item.price.amount),
                    currency=domain.check_currency(item.price.currency or "USD"),
                    quantity=domain.check_quantity(item.quantity),
                )
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        async with self.ctx.transaction() as uow:
            created, updated = await store.put_many(uow, wanted)
        return pb.PutProductsReply(created=created, updated=updated)
