"""The signed-in user's cart: view, add, change, remove, check out.

There is no user id in these paths: every route acts on the caller's own cart, so one
customer cannot even name another's (the cart service checks the token again).

A card is checked at the door (Luhn, expiry, CVC: a bad one is a 422 before any service is
called) and handed to the payment service once, for a token (``TokenizeCard``); the cart and
its CartCheckedOut event carry that token and the last four digits, never the number.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal, TypeVar

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field, PlainSerializer, field_validator

from mercato.api.cart.v1 import cart_pb2 as pb
from mercato.api.cart.v1.cart_pb2_grpc import CartStub
from mercato.api.payment.v1 import payment_pb2
from mercato.api.payment.v1.payment_pb2_grpc import PaymentStub
from mercato.services.gateway.inputs import Count, Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.security import CurrentCaller
from mercato.services.gateway.upstream import IdempotencyKey, Upstream

M = TypeVar("M")  # the cart's or the order's PaymentMethod message (the same fields)

router = APIRouter(prefix="/api/v1/cart", tags=["cart"], responses=PROBLEM_RESPONSES)

MAX_QUANTITY = 1_000  # per product; the cart service holds the same limit
ProductId = Annotated[str, Path(min_length=1, max_length=200)]
Quantity = Annotated[Count, Field(ge=1, le=MAX_QUANTITY)]
# Money is a JSON number on the wire, a Decimal here.
Amount = Annotated[Decimal, PlainSerializer(float, return_type=float, when_used="json")]
Text = Annotated[str, Field(min_length=1, max_length=200)]


class CartLine(BaseModel):
    productId: str
    name: str
    quantity: int
    price: Amount = Field(description="Unit price, kept current with the catalog")
    lineTotal: Amount


class Cart(BaseModel):
    cartId: str | None = Field(description="None until something is put in the cart")
    userId: str
    items: list[CartLine]
    total: Amount
    currency: str
    itemCount: int
    updatedAt: str | None


class NewItem(Input):
    productId: Annotated[str, Field(min_length=1, max_length=200)]
    quantity: Quantity = 1


class QuantityChange(Input):
    quantity: Quantity


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class CardPayment(Input):
    method: Literal["card"]
    cardNumber: Annotated[
        str, Field(pattern=r"^[0-9][0-9 -]{10,21}[0-9]$", examples=["4242424242424242"])
    ]
    expiry: Annotated[
        str, Field(pattern=r"^(0[1-9]|1[0-2])/([0-9]{2}|20[0-9]{2})$", examples=["12/30"])
    ]
    cvc: Annotated[str, Field(pattern=r"^[0-9]{3,4}$")]
    holder: Text

    @field_validator("cardNumber")
    @classmethod
    def _card_number(cls, value: str) -> str:
        digits = value.replace(" ", "").replace("-", "")
        # Never put the number in the message: errors are logged and answered.
        if not 12 <= len(digits) <= 19 or not luhn_ok(digits):
            raise ValueError("not a valid card number")
        return digits

    @field_validator("expiry")
    @classmethod
    def _not_expired(cls, value: str) -> str:
        month, _, year = value.partition("/")
        full_year = int(year) if len(year) == 4 else 2000 + int(year)
        now = datetime.now(UTC)
        if (full_year, int(month)) < (now.year, now.month):
            raise ValueError("the card has expired")
        return value


class WalletPayment(Input):
    method: Literal["wallet"]


class ShippingAddress(Input):
    name: Text
    line1: Text
    line2: Annotated[str, Field(max_length=200)] | None = None
    city: Text
    postalCode: Annotated[str, Field(min_length=1, max_length=20)]
    country: Annotated[str, Field(min_length=2, max_length=56)]


class Checkout(Input):
    payment: Annotated[CardPayment | WalletPayment, Field(discriminator="method")]
    shippingAddress: ShippingAddress


class CheckoutAccepted(BaseModel):
    orderId: str


def _cart(reply: pb.CartView) -> Cart:
    return Cart(
        cartId=reply.cart_id or None,
        userId=reply.user_id,
        items=[
            CartLine(
                productId=line.product_id,
                name=line.name,
                quantity=line.quantity,
                price=Decimal(line.price.amount),
                lineTotal=Decimal(line.line_total.amount),
            )
            for line in reply.items
        ],
        total=Decimal(reply.total.amount),
        currency=reply.total.currency,
        itemCount=reply.item_count,
        updatedAt=reply.updated_at or None,
    )


async def payment_method(
    payment: CardPayment | WalletPayment, upstream: Upstream, kind: Callable[..., M]
) -> M:
    """The payment as the cart or the order keeps it (``kind``): the wallet, or a card
    exchanged for a token (and the digest that tells a retry's card from another)."""
    if isinstance(payment, WalletPayment):
        return kind(method="wallet")
    card = payment_pb2.TokenizeCardRequest(
        card_number=payment.cardNumber,
        expiry=payment.expiry,
        cvc=payment.cvc,
        holder=payment.holder,
    )
    token = await upstream.call("payment", PaymentStub, "TokenizeCard", card)
    return kind(method="card", token=token.token, last4=token.last4, card_digest=token.digest)


@router.get("", summary="My cart, with current prices and totals")
async def get_cart(caller: CurrentCaller, upstream: Upstream) -> Cart:
    return _cart(await upstream.call("cart", CartStub, "GetCart", pb.GetCartRequest()))


@router.post("/items", summary="Put a product in my cart (adds to the quantity there)")
async def add_item(
    body: NewItem, caller: CurrentCaller, upstream: Upstream, key: IdempotencyKey = None
) -> Cart:
    message = pb.AddItemRequest(product_id=body.productId, quantity=body.quantity)
    return _cart(await upstream.call("cart", CartStub, "AddItem", message))


@router.patch("/items/{productId}", summary="Set how many of a product my cart holds")
async def update_item(
    productId: ProductId, body: QuantityChange, caller: CurrentCaller, upstream: Upstream
) -> Cart:
    message = pb.UpdateItemRequest(product_id=productId, quantity=body.quantity)
    return _cart(await upstream.call("cart", CartStub, "UpdateItem", message))


@router.delete("/items/{productId}", summary="Take a product out of my cart")
async def remove_item(productId: ProductId, caller: CurrentCaller, upstream: Upstream) -> Cart:
    message = pb.RemoveItemRequest(product_id=productId)
    return _cart(await upstream.call("cart", CartStub, "RemoveItem", message))


@router.post(
    "/checkout",
    status_code=202,
    summary="Order what is in my cart; the order proceeds in the background",
)
async def checkout(
    body: Checkout,
    caller: CurrentCaller,
    upstream: Upstream,
    response: Response,
    key: IdempotencyKey = None,
) -> CheckoutAccepted:
    a = body.shippingAddress
    message = pb.CheckoutRequest(
        payment=await payment_method(body.payment, upstream, pb.PaymentMethod),
        shipping_address=pb.Address(
            name=a.name,
            line1=a.line1,
            line2=a.line2,
            city=a.city,
            postal_code=a.postalCode,
            country=a.country,
        ),
    )
    reply = await upstream.call("cart", CartStub, "Checkout", message)
    response.headers["Location"] = f"/api/v1/orders/{reply.order_id}"
    return CheckoutAccepted(orderId=reply.order_id)
