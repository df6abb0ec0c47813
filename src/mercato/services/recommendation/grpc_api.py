"""recommendation's gRPC API: Recommend, for a product or a user.

Anyone may ask about a product; a user's list (from what they viewed) is theirs or an
admin's to read, for it tells what they looked at.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio

from mercato.api.common.v1.common_pb2 import Money
from mercato.api.recommendation.v1 import recommendation_pb2 as pb
from mercato.api.recommendation.v1 import recommendation_pb2_grpc
from mercato.platform.auth import require_caller
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.storage.sql import Connection
from mercato.services.recommendation import domain, store
from mercato.services.recommendation.domain import Candidate

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
MAX_ID = 200


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


class RecommendationApi(recommendation_pb2_grpc.RecommendationServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    async def Recommend(self, request: pb.RecommendRequest, context: Context) -> pb.RecommendReply:
        product_id, user_id = request.product_id, request.user_id
        limit = request.limit or domain.DEFAULT_LIMIT
        if not (product_id or user_id) or len(product_id) > MAX_ID or len(user_id) > MAX_ID:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a productId or a userId")
        if not 1 <= limit <= domain.MAX_LIMIT:
            await abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"limit: 1 to {domain.MAX_LIMIT}"
            )
        if user_id:
            caller = await require_caller(self.ctx, context)
            if not (caller.is_admin or caller.user_id == user_id):
                await abort(context, grpc.StatusCode.PERMISSION_DENIED, "not your data")
        async with self.ctx.db.connect() as conn:
            if product_id:
                seeds = [product_id]
            else:
                seeds = await store.recent(conn, domain.user_viewer(user_id), domain.MAX_SEEDS)
            items = await recommend(conn, seeds, limit)
        return pb.RecommendReply(items=items)


async def recommend(conn: Connection, seeds: list[str], limit: int) -> list[pb.Recommended]:
    """Up to ``limit`` products to show beside ``seeds``, best first (see ``domain``)."""
    exclude = set(seeds)
    ranked = domain.rank(await store.partners(conn, seeds), exclude)
    showable = await store.shown(conn, [c.product_id for c in ranked])
    chosen: list[tuple[Candidate, Any]] = [
        (c, showable[c.product_id]) for c in ranked if c.product_id in showable
    ][:limit]
    if len(chosen) < limit:
        taken = exclude | {c.product_id for c, _ in chosen}
        in_categories = await store.categories(conn, seeds)
        found = await store.popular(conn, in_categories, taken, limit - len(chosen))
        ranks = domain.popular([(r.product_id, p) for r, p in found])
        chosen += zip(ranks, (r for r, _ in found), strict=True)
    return [
        pb.Recommended(
            product_id=c.product_id,
            name=row.name,
            price=Money(amount=format(row.price.normalize(), "f"), currency=row.currency or "USD"),
            reason=c.reason.value,
            score=c.score,
        )
        for c, row in chosen
    ]
