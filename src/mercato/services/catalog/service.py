"""catalog: products, prices, and the availability shown to shoppers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc.aio

from mercato.api.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from mercato.contracts.events import StockUpdated
from mercato.platform.inbox import on
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.services.catalog.demo import load_demo_catalog
from mercato.services.catalog.grpc_api import CatalogApi
from mercato.services.catalog.handlers import show_stock


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    catalog_pb2_grpc.add_CatalogServicer_to_server(CatalogApi(ctx), server)  # type: ignore[no-untyped-call]
    return [catalog_pb2.DESCRIPTOR.services_by_name["Catalog"].full_name]


service = Service(
    name="catalog",
    migrations=Path(__file__).parent / "migrations",
    handlers=[on(StockUpdated, show_stock)],
    grpc=register,
    on_start=load_demo_catalog,
)
