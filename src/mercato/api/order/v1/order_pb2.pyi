from mercato.api.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Address(_message.Message):
    __slots__ = ("name", "line1", "line2", "city", "postal_code", "country")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LINE1_FIELD_NUMBER: _ClassVar[int]
    LINE2_FIELD_NUMBER: _ClassVar[int]
    CITY_FIELD_NUMBER: _ClassVar[int]
    POSTAL_CODE_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    name: str
    line1: str
    line2: str
    city: str
    postal_code: str
    country: str
    def __init__(self, name: _Optional[str] = ..., line1: _Optional[str] = ..., line2: _Optional[str] = ..., city: _Optional[str] = ..., postal_code: _Optional[str] = ..., country: _Optional[str] = ...) -> None: ...

class PaymentMethod(_message.Message):
    __slots__ = ("method", "token", "last4", "card_digest")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LAST4_FIELD_NUMBER: _ClassVar[int]
    CARD_DIGEST_FIELD_NUMBER: _ClassVar[int]
    method: str
    token: str
    last4: str
    card_digest: str
    def __init__(self, method: _Optional[str] = ..., token: _Optional[str] = ..., last4: _Optional[str] = ..., card_digest: _Optional[str] = ...) -> None: ...

class Payment(_message.Message):
    __slots__ = ("method", "last4", "payment_id", "paid", "refunded")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LAST4_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_FIELD_NUMBER: _ClassVar[int]
    method: str
    last4: str
    payment_id: str
    paid: bool
    refunded: bool
    def __init__(self, method: _Optional[str] = ..., last4: _Optional[str] = ..., payment_id: _Optional[str] = ..., paid: _Optional[bool] = ..., refunded: _Optional[bool] = ...) -> None: ...

class OrderItem(_message.Message):
    __slots__ = ("product_id", "quantity", "price", "status")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    price: _common_pb2.Money
    status: str
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., price: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., status: _Optional[str] = ...) -> None: ...

class StatusChange(_message.Message):
    __slots__ = ("at", "from_status", "to_status", "reason")
    AT_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    at: str
    from_status: str
    to_status: str
    reason: str
    def __init__(self, at: _Optional[str] = ..., from_status: _Optional[str] = ..., to_status: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Order(_message.Message):
    __slots__ = ("order_id", "user_id", "status", "items", "total", "history", "payment", "shipment_id", "shipping_address", "cancel_reason", "created_at", "updated_at", "cart_id", "version", "settled", "pending")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    SHIPMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    CART_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SETTLED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    status: str
    items: _containers.RepeatedCompositeFieldContainer[OrderItem]
    total: _common_pb2.Money
    history: _containers.RepeatedCompositeFieldContainer[StatusChange]
    payment: Payment
    shipment_id: str
    shipping_address: Address
    cancel_reason: str
    created_at: str
    updated_at: str
    cart_id: str
    version: int
    settled: bool
    pending: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., status: _Optional[str] = ..., items: _Optional[_Iterable[_Union[OrderItem, _Mapping]]] = ..., total: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., history: _Optional[_Iterable[_Union[StatusChange, _Mapping]]] = ..., payment: _Optional[_Union[Payment, _Mapping]] = ..., shipment_id: _Optional[str] = ..., shipping_address: _Optional[_Union[Address, _Mapping]] = ..., cancel_reason: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., cart_id: _Optional[str] = ..., version: _Optional[int] = ..., settled: _Optional[bool] = ..., pending: _Optional[_Iterable[str]] = ...) -> None: ...

class ItemRequest(_message.Message):
    __slots__ = ("product_id", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class CreateOrderRequest(_message.Message):
    __slots__ = ("items", "payment", "shipping_address", "order_id", "user_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ItemRequest]
    payment: PaymentMethod
    shipping_address: Address
    order_id: str
    user_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[ItemRequest, _Mapping]]] = ..., payment: _Optional[_Union[PaymentMethod, _Mapping]] = ..., shipping_address: _Optional[_Union[Address, _Mapping]] = ..., order_id: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class GetOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class ListOrdersRequest(_message.Message):
    __slots__ = ("page", "status", "user_id")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    status: str
    user_id: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., status: _Optional[str] = ..., user_id: _Optional[str] = ...) -> None: ...

class ListOrdersReply(_message.Message):
    __slots__ = ("orders", "page")
    ORDERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    orders: _containers.RepeatedCompositeFieldContainer[Order]
    page: _common_pb2.PageInfo
    def __init__(self, orders: _Optional[_Iterable[_Union[Order, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageInfo, _Mapping]] = ...) -> None: ...

class CancelOrderRequest(_message.Message):
    __slots__ = ("order_id", "reason")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    reason: str
    def __init__(self, order_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class OrderItemUpdate(_message.Message):
    __slots__ = ("product_id", "quantity", "status")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    status: str
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., status: _Optional[str] = ...) -> None: ...

class UpdateOrderRequest(_message.Message):
    __slots__ = ("order_id", "status", "reason", "shipping_address", "items")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    status: str
    reason: str
    shipping_address: Address
    items: _containers.RepeatedCompositeFieldContainer[OrderItemUpdate]
    def __init__(self, order_id: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., shipping_address: _Optional[_Union[Address, _Mapping]] = ..., items: _Optional[_Iterable[_Union[OrderItemUpdate, _Mapping]]] = ...) -> None: ...

class WaitOrderRequest(_message.Message):
    __slots__ = ("order_id", "until", "timeout_seconds")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    until: str
    timeout_seconds: float
    def __init__(self, order_id: _Optional[str] = ..., until: _Optional[str] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class WaitOrderReply(_message.Message):
    __slots__ = ("outcome", "order")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    outcome: str
    order: Order
    def __init__(self, outcome: _Optional[str] = ..., order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class WatchOrderRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class DraftItem(_message.Message):
    __slots__ = ("product_id", "quantity", "price")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    price: _common_pb2.Money
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., price: _Optional[_Union[_common_pb2.Money, _Mapping]] = ...) -> None: ...

class Draft(_message.Message):
    __slots__ = ("order_id", "user_id", "items", "total", "placed", "order")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    items: _containers.RepeatedCompositeFieldContainer[DraftItem]
    total: _common_pb2.Money
    placed: bool
    order: Order
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[DraftItem, _Mapping]]] = ..., total: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., placed: _Optional[bool] = ..., order: _Optional[_Union[Order, _Mapping]] = ...) -> None: ...

class CreateDraftRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    def __init__(self, user_id: _Optional[str] = ...) -> None: ...

class AddDraftItemRequest(_message.Message):
    __slots__ = ("order_id", "product_id", "quantity")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    product_id: str
    quantity: int
    def __init__(self, order_id: _Optional[str] = ..., product_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class GetDraftRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class PlaceDraftRequest(_message.Message):
    __slots__ = ("order_id", "payment", "shipping_address")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_FIELD_NUMBER: _ClassVar[int]
    SHIPPING_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    payment: PaymentMethod
    shipping_address: Address
    def __init__(self, order_id: _Optional[str] = ..., payment: _Optional[_Union[PaymentMethod, _Mapping]] = ..., shipping_address: _Optional[_Union[Address, _Mapping]] = ...) -> None: ...

class DraftSpec(_message.Message):
    __slots__ = ("order_id", "user_id", "items")
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    user_id: str
    items: _containers.RepeatedCompositeFieldContainer[DraftItem]
    def __init__(self, order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[DraftItem, _Mapping]]] = ...) -> None: ...

class CreateDraftsRequest(_message.Message):
    __slots__ = ("drafts",)
    DRAFTS_FIELD_NUMBER: _ClassVar[int]
    drafts: _containers.RepeatedCompositeFieldContainer[DraftSpec]
    def __init__(self, drafts: _Optional[_Iterable[_Union[DraftSpec, _Mapping]]] = ...) -> None: ...

class CreateDraftsReply(_message.Message):
    __slots__ = ("written", "kept")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    written: int
    kept: int
    def __init__(self, written: _Optional[int] = ..., kept: _Optional[int] = ...) -> None: ...
