"""Recommendations: what to show beside a product, or to a signed-in user."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, PlainSerializer

from mercato.api.recommendation.v1 import recommendation_pb2 as pb
from mercato.api.recommendation.v1.recommendation_pb2_grpc import RecommendationStub
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.upstream import Upstream

router = APIRouter(
    prefix="/api/v1/recommendations", tags=["recommendations"], responses=PROBLEM_RESPONSES
)

Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]


class Recommended(BaseModel):
    productId: str
    name: str
    price: Amount
    reason: Literal["alsoViewed", "boughtTogether", "popularInCategory"]
    score: float = Field(description="Higher is better; falls along the list")


class Recommendations(BaseModel):
    items: list[Recommended]


@router.get(
    "",
    summary="Products to show beside a product, or to a user (their own list: sign in)",
    description=(
        "With `productId`: products viewed in the same sessions or by the same users "
        "(`alsoViewed`) and bought in the same orders (`boughtTogether`), then the popular "
        "products of its category (`popularInCategory`). With `userId` alone: the same, "
        "from the products the user viewed last (the user's token or an admin's). Never "
        "the product itself, never an inactive or deleted one."
    ),
)
async def recommendations(
    upstream: Upstream,
    productId: Annotated[str, Query(min_length=1, max_length=200)] | None = None,
    userId: Annotated[str, Query(min_length=1, max_length=200)] | None = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> Recommendations:
    if productId is None and userId is None:
        raise Problem(422, "give a productId or a userId")
    return Recommendations(items=await recommend(upstream, productId or "", userId or "", limit))


async def recommend(
    upstream: Upstream, product_id: str, user_id: str, limit: int
) -> list[Recommended]:
    message = pb.RecommendRequest(product_id=product_id, user_id=user_id, limit=limit)
    reply = await upstream.call("recommendation", RecommendationStub, "Recommend", message)
    return [
        Recommended(
            productId=r.product_id,
            name=r.name,
            price=Decimal(r.price.amount),
            reason=r.reason,
            score=r.score,
        )
        for r in reply.items
    ]
