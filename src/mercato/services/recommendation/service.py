"""recommendation: the service declaration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.recommendation.v1 import recommendation_pb2, recommendation_pb2_grpc
from mercato.contracts.events import (
    OrderCompleted,
    ProductCreated,
    ProductDeleted,
    ProductUpdated,
    ProductViewed,
)
from mercato.platform.inbox import on
from mercato.platform.runtime.service import UNHURRIED, Service, ServiceContext
from mercato.services.recommendation.grpc_api import RecommendationApi
from mercato.services.recommendation.handlers import (
    count_purchase,
    count_view,
    forget_deleted_product,
    keep_created_product,
    keep_updated_product,
)


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    recommendation_pb2_grpc.add_RecommendationServicer_to_server(RecommendationApi(ctx), server)  # type: ignore[no-untyped-call]
    return [recommendation_pb2.DESCRIPTOR.services_by_name["Recommendation"].full_name]


service = Service(
    name="recommendation",
    migrations=Path(__file__).parent / "migrations",
    batch_wait=UNHURRIED,
    handlers=[
        on(ProductCreated, keep_created_product),
        on(ProductUpdated, keep_updated_product),
        on(ProductDeleted, forget_deleted_product),
        on(ProductViewed, count_view),
        on(OrderCompleted, count_purchase),
    ],
    grpc=register,
)
