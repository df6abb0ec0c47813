"""Every integration event of Mercato as a pydantic model, with the seeds' exact field names.

Fields may be added within a schema version, never removed or renamed; readers ignore fields
they do not know (``extra="ignore"``). Money is a ``Decimal`` in code and a JSON number on the
wire. Ids are strings.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=18, decimal_places=4, allow_inf_nan=False, strict=False),
    PlainSerializer(float, return_type=float, when_used="json"),
]
Id = Annotated[str, Field(min_length=1, max_length=200)]
Quantity = Annotated[int, Field(ge=0, le=1_000_000_000)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True, populate_by_name=True)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready dict carried as an event's ``data``."""
        return self.model_dump(mode="json", exclude_none=True)


class Item(Payload):
    productId: Id
    quantity: Quantity


class PricedItem(Item):
    price: Money


class CartItem(Item):
    price: Money | None = None


class ShortItem(Payload):
    productId: Id
    requested: Quantity
    available: Quantity


class Address(Payload):
    name: str
    line1: str
    line2: str | None = None
    city: str
    postalCode: str
    country: str


class PaymentMethod(Payload):
    """How an order is paid, as events may carry it: never a card number.

    A card is tokenized by the payment service at the door (``token``, ``last4``); the wallet
    is the user's store credit.
    """

    method: Literal["card", "wallet"]
    token: Id | None = None
    last4: Annotated[str, Field(pattern=r"^[0-9]{4}$")] | None = None


# -- catalog ---------------------------------------------------------------------------
class ProductCreated(Payload):
    productId: Id
    name: str
    price: Money
    quantity: Quantity
    description: str | None = None
    currency: Currency = "USD"
    category: str | None = None
    active: bool | None = None  # None: active (the seed's events do not say)


class ProductUpdated(Payload):
    productId: Id
    price: Money | None = None
    quantity: Quantity | None = None
    name: str | None = None
    description: str | None = None
    currency: Currency | None = None
    category: str | None = None
    active: bool | None = None


class ProductDeleted(Payload):
    productId: Id


class ProductViewed(Payload):
    productId: Id
    userId: Id | None = None
    sessionId: Id | None = None  # the browsing session the gateway was told (X-Session-ID)


# -- identity --------------------------------------------------------------------------
class UserCreated(Payload):
    userId: Id
    email: str
    name: str


class UserAuthenticated(Payload):
    userId: Id


class LoginFailed(Payload):
    email: str
    reason: str


class UserRolesUpdated(Payload):
    userId: Id
    roles: list[str]


class ProfileUpdated(Payload):
    userId: Id
    name: str | None = None
    email: str | None = None


# -- cart ------------------------------------------------------------------------------
class CartItemAdded(Payload):
    userId: Id
    productId: Id
    quantity: Quantity


class CartItemRemoved(Payload):
    userId: Id
    productId: Id


class CartUpdated(Payload):
    userId: Id
    cartId: Id
    items: list[PricedItem]
    total: Money


class CartCheckedOut(Payload):
    userId: Id
    cartId: Id
    items: list[CartItem]
    orderId: Id | None = None
    currency: Currency = "USD"
    payment: PaymentMethod | None = None
    shippingAddress: Address | None = None


class CartAbandoned(Payload):
    userId: Id
    cartId: Id


# -- order -----------------------------------------------------------------------------
class OrderCreated(Payload):
    orderId: Id
    userId: Id
    items: list[PricedItem]
    totalAmount: Money
    status: str
    currency: Currency = "USD"
    payment: PaymentMethod | None = None
    shippingAddress: Address | None = None


class OrderStatusChanged(Payload):
    orderId: Id
    status: str
    previousStatus: str | None = None  # None: the order was just created
    reason: str | None = None
    userId: Id | None = None
    # On the change to RESERVED (the hand-over to delivery): what to ship, and where.
    items: list[Item] | None = None
    shippingAddress: Address | None = None


class OrderPaid(Payload):
    orderId: Id
    paymentId: Id
    amount: Money


class OrderCancelled(Payload):
    orderId: Id
    reason: str
    previousStatus: str | None = None
    userId: Id | None = None


class OrderCompleted(Payload):
    orderId: Id
    paymentId: Id
    status: str
    userId: Id | None = None
    items: list[Item] | None = None  # what was delivered (recommendation's "bought together")


# -- payment ---------------------------------------------------------------------------
class PaymentInitiated(Payload):
    paymentId: Id
    orderId: Id
    userId: Id
    amount: Money
    status: str


class PaymentCompleted(Payload):
    paymentId: Id
    orderId: Id
    status: str


class PaymentFailed(Payload):
    paymentId: Id
    orderId: Id
    reason: str


class PaymentCancelled(Payload):
    """The order was cancelled before it was charged: nothing was taken, and nothing will be."""

    paymentId: Id
    orderId: Id
    reason: str


class PaymentRefunded(Payload):
    paymentId: Id
    orderId: Id
    amount: Money
    reason: str


# -- inventory -------------------------------------------------------------------------
class StockReserved(Payload):
    orderId: Id
    items: list[Item]


class StockReservationFailed(Payload):
    orderId: Id
    reason: str
    items: list[ShortItem]


class StockReleased(Payload):
    """The order holds no stock any more: what it held is back on sale (``items``; empty when
    the cancellation came before the reservation, so nothing was or will be reserved)."""

    orderId: Id
    items: list[Item]


class StockDeducted(Payload):
    orderId: Id
    items: list[Item]


class StockUpdated(Payload):
    productId: Id
    quantity: Quantity


class StockLow(Payload):
    productId: Id
    quantity: Quantity
    threshold: Quantity


class OutOfStock(Payload):
    productId: Id


# -- shipping --------------------------------------------------------------------------
class ShipmentCreated(Payload):
    shipmentId: Id
    orderId: Id
    address: Address | None = None


class ShipmentDelivered(Payload):
    shipmentId: Id
    orderId: Id


class ShipmentFailed(Payload):
    shipmentId: Id
    orderId: Id
    reason: str


class ReturnShipmentCreated(Payload):
    shipmentId: Id
    orderId: Id


class ReturnShipmentReceived(Payload):
    shipmentId: Id
    orderId: Id
    items: list[Item]


# -- notification ----------------------------------------------------------------------
class NotificationSent(Payload):
    notificationId: Id
    userId: Id
    channel: str
    template: str


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    model: builtins.type[Payload]
    publisher: str
    schemaversion: int = 1


_PUBLISHERS: dict[str, tuple[type[Payload], ...]] = {
    "catalog": (ProductCreated, ProductUpdated, ProductDeleted, ProductViewed),
    "identity": (UserCreated, UserAuthenticated, LoginFailed, UserRolesUpdated, ProfileUpdated),
    "cart": (CartItemAdded, CartItemRemoved, CartUpdated, CartCheckedOut, CartAbandoned),
    "order": (OrderCreated, OrderStatusChanged, OrderPaid, OrderCancelled, OrderCompleted),
    "payment": (
        PaymentInitiated,
        PaymentCompleted,
        PaymentFailed,
        PaymentCancelled,
        PaymentRefunded,
    ),
    "inventory": (
        StockReserved,
        StockReservationFailed,
        StockReleased,
        StockDeducted,
        StockUpdated,
        StockLow,
        OutOfStock,
    ),
    "shipping": (
        ShipmentCreated,
        ShipmentDelivered,
        ShipmentFailed,
        ReturnShipmentCreated,
        ReturnShipmentReceived,
    ),
    "notification": (NotificationSent,),
}

REGISTRY: dict[str, EventSpec] = {
    model.__name__: EventSpec(model.__name__, model, publisher)
    for publisher, models in _PUBLISHERS.items()
    for model in models
}


# Every event type's payload model, by type: the catalog of a consumer of every event
# (``every(handler, MODELS)``: audit, webhooks).
MODELS: dict[str, type[Payload]] = {t: spec.model for t, spec in REGISTRY.items()}


class UnknownEventType(KeyError):
    def __str__(self) -> str:
        known = ", ".join(sorted(REGISTRY))
        return f"unknown event type {self.args[0]!r}; known types: {known}"


def spec_of(event_type: str) -> EventSpec:
    try:
        return REGISTRY[event_type]
    except KeyError:
        raise UnknownEventType(event_type) from None


def type_of(payload: Payload) -> str:
    return type(payload).__name__
