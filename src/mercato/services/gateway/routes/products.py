"""Products: anyone browses and searches; admins create, change and delete."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, Field, PlainSerializer

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.api.common.v1 import common_pb2
from mercato.services.gateway.inputs import Count, Input, Number
from mercato.services.gateway.pages import pages_of
from mercato.services.gateway.problems import PROBLEM_RESPONSES, Problem
from mercato.services.gateway.routes.recommendations import Recommended, recommend
from mercato.services.gateway.security import AdminCaller
from mercato.services.gateway.upstream import IdempotencyKey, Upstream

router = APIRouter(prefix="/api/v1/products", tags=["products"], responses=PROBLEM_RESPONSES)

ProductId = Annotated[str, Path(min_length=1, max_length=200)]
Sort = Literal["name", "-name", "price", "-price", "newest", "oldest"]
SORTS: dict[str, int] = {
    "name": pb.PRODUCT_SORT_NAME,
    "-name": pb.PRODUCT_SORT_NAME_DESC,
    "price": pb.PRODUCT_SORT_PRICE,
    "-price": pb.PRODUCT_SORT_PRICE_DESC,
    "newest": pb.PRODUCT_SORT_NEWEST,
    "oldest": pb.PRODUCT_SORT_OLDEST,
}
# Money is a JSON number on the wire, a Decimal here.
Amount = Annotated[
    Decimal,
    Field(ge=0, lt=1_000_000_000, decimal_places=2, allow_inf_nan=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Description = Annotated[str, Field(max_length=5000)]
Category = Annotated[str, Field(max_length=100)]
Quantity = Annotated[Count, Field(ge=0, le=1_000_000_000)]
Price = Annotated[Amount, Number]  # a price given: a JSON number


class Product(BaseModel):
    productId: str
    name: str
    description: str
    category: str
    price: Amount
    currency: str
    active: bool
    available: int | None = Field(description="Available to sell, as inventory last said")
    createdAt: str
    updatedAt: str


class ProductView(Product):
    recommendations: list[Recommended] | None = Field(
        None,
        description=(
            "With `?recommendations=N`: up to N products to show beside it, as "
            "`GET /api/v1/recommendations?productId=` ranks them (null when not asked, or "
            "while the recommendation service is not running)"
        ),
    )


class ProductPage(BaseModel):
    items: list[Product]
    page: int
    pageSize: int
    total: int


class NewProduct(Input):
    name: Name
    description: Description = ""
    category: Category = ""
    price: Price
    currency: Currency = "USD"
    quantity: Quantity = 0
    active: bool = True


class ProductChange(Input):
    name: Name | None = None
    description: Description | None = None
    category: Category | None = None
    price: Price | None = None
    currency: Currency | None = None
    quantity: Quantity | None = None
    active: bool | None = None


def _fields(reply: pb.Product) -> dict[str, object]:
    """A product's fields as the API names them: validated by the model they go into (a
    page's items all at once, in one call)."""
    return {
        "productId": reply.product_id,
        "name": reply.name,
        "description": reply.description,
        "category": reply.category,
        "price": reply.price.amount,
        "currency": reply.price.currency,
        "active": reply.active,
        "available": reply.available if reply.HasField("available") else None,
        "createdAt": reply.created_at,
        "updatedAt": reply.updated_at,
    }


def _product(reply: pb.Product) -> Product:
    return Product.model_validate(_fields(reply))


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.get("", summary="Browse and search the catalog", response_model=ProductPage)
async def list_products(
    upstream: Upstream,
    q: Annotated[str, Query(max_length=200, description="Text in the name or description")] = "",
    category: Annotated[str, Query(max_length=100)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    pageSize: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Sort = "name",
    includeInactive: Annotated[bool, Query(description="Inactive products too (admin)")] = False,
) -> Response:
    # What anyone may see is kept (services/gateway/pages.py); an admin's view with the
    # inactive products is not.
    pages = pages_of(upstream.ctx)
    key = (q, category, page, pageSize, sort)
    kept = None if includeInactive else pages.get(key)
    if kept is not None and pages.sendable(kept[0]):
        return _json(kept[1])
    message = pb.ListProductsRequest(
        query=q,
        category=category,
        page=common_pb2.PageRequest(page=page, page_size=pageSize),
        sort=SORTS[sort],  # type: ignore[arg-type]
        include_inactive=includeInactive,
        if_version=kept[0] if kept is not None else None,
    )
    writes = pages.writes
    reply = await upstream.call("catalog", CatalogStub, "ListProducts", message)
    pages.read(reply.version, writes)
    if reply.unchanged and kept is not None:
        return _json(kept[1])
    body = (
        ProductPage.model_validate(
            {
                "items": [_fields(p) for p in reply.products],
                "page": reply.page.page,
                "pageSize": reply.page.page_size,
                "total": reply.page.total,
            }
        )
        .model_dump_json()
        .encode()
    )
    if not includeInactive:
        pages.put(key, reply.version, body)
    return _json(body)


# A browsing session the client names (the storefront keeps one per tab): recommendation
# counts the products viewed in one session as viewed together.
SessionId = Annotated[
    str | None,
    Header(
        alias="X-Session-ID",
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="The browsing session (products viewed in one are 'also viewed')",
    ),
]


@router.get("/{productId}", summary="One product")
async def get_product(
    productId: ProductId,
    upstream: Upstream,
    session: SessionId = None,
    recommendations: Annotated[
        int, Query(ge=0, le=20, description="How many recommendations to include (0: none)")
    ] = 0,
) -> ProductView:
    message = pb.GetProductRequest(product_id=productId, session_id=session or "")
    reply = await upstream.call("catalog", CatalogStub, "GetProduct", message)
    beside = None
    if recommendations:
        try:
            beside = await recommend(upstream, productId, "", recommendations)
        except Problem as problem:
            # Recommendation is optional (mercato up --without): the page goes without.
            if problem.status < 500:
                raise
    return ProductView.model_validate({**_fields(reply), "recommendations": beside})


@router.post("", status_code=201, summary="Add a product (admin)")
async def create_product(
    body: NewProduct, caller: AdminCaller, upstream: Upstream, key: IdempotencyKey = None
) -> Product:
    message = pb.CreateProductRequest(
        name=body.name,
        description=body.description,
        category=body.category,
        price=common_pb2.Money(amount=str(body.price), currency=body.currency),
        quantity=body.quantity,
        active=body.active,
    )
    return _product(await upstream.call("catalog", CatalogStub, "CreateProduct", message))


@router.patch("/{productId}", summary="Change a product (admin)")
async def update_product(
    productId: ProductId, body: ProductChange, caller: AdminCaller, upstream: Upstream
) -> Product:
    if body.currency is not None and body.price is None:
        # A currency alone would reprice every unit without saying so.
        raise Problem(422, "change the currency together with the price")
    price = None
    if body.price is not None:
        price = common_pb2.Money(amount=str(body.price), currency=body.currency or "")
    message = pb.UpdateProductRequest(
        product_id=productId,
        name=body.name,
        description=body.description,
        category=body.category,
        price=price,
        quantity=body.quantity,
        active=body.active,
    )
    return _product(await upstream.call("catalog", CatalogStub, "UpdateProduct", message))


@router.delete("/{productId}", status_code=204, summary="Delete a product (admin)")
async def delete_product(productId: ProductId, caller: AdminCaller, upstream: Upstream) -> Response:
    message = pb.DeleteProductRequest(product_id=productId)
    await upstream.call("catalog", CatalogStub, "DeleteProduct", message)
    return Response(status_code=204)
