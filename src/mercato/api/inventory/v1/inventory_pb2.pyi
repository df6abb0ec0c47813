from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stock(_message.Message):
    __slots__ = ("product_id", "available", "reserved", "in_warehouse", "retired")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    IN_WAREHOUSE_FIELD_NUMBER: _ClassVar[int]
    RETIRED_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    available: int
    reserved: int
    in_warehouse: int
    retired: bool
    def __init__(self, product_id: _Optional[str] = ..., available: _Optional[int] = ..., reserved: _Optional[int] = ..., in_warehouse: _Optional[int] = ..., retired: _Optional[bool] = ...) -> None: ...

class GetStockRequest(_message.Message):
    __slots__ = ("product_id",)
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    def __init__(self, product_id: _Optional[str] = ...) -> None: ...

class StockItem(_message.Message):
    __slots__ = ("product_id", "quantity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ...) -> None: ...

class CheckAvailabilityRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StockItem]
    def __init__(self, items: _Optional[_Iterable[_Union[StockItem, _Mapping]]] = ...) -> None: ...

class ShortItem(_message.Message):
    __slots__ = ("product_id", "requested", "available")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    requested: int
    available: int
    def __init__(self, product_id: _Optional[str] = ..., requested: _Optional[int] = ..., available: _Optional[int] = ...) -> None: ...

class CheckAvailabilityReply(_message.Message):
    __slots__ = ("available", "short")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    SHORT_FIELD_NUMBER: _ClassVar[int]
    available: bool
    short: _containers.RepeatedCompositeFieldContainer[ShortItem]
    def __init__(self, available: _Optional[bool] = ..., short: _Optional[_Iterable[_Union[ShortItem, _Mapping]]] = ...) -> None: ...

class RestockRequest(_message.Message):
    __slots__ = ("product_id", "quantity", "reason")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    reason: str
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class GetStockReportRequest(_message.Message):
    __slots__ = ("product_id", "limit")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    limit: int
    def __init__(self, product_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Movement(_message.Message):
    __slots__ = ("kind", "quantity", "order_id", "reason", "actor", "at")
    KIND_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    quantity: int
    order_id: str
    reason: str
    actor: str
    at: str
    def __init__(self, kind: _Optional[str] = ..., quantity: _Optional[int] = ..., order_id: _Optional[str] = ..., reason: _Optional[str] = ..., actor: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class StockReport(_message.Message):
    __slots__ = ("stock", "low_stock_threshold", "movements")
    STOCK_FIELD_NUMBER: _ClassVar[int]
    LOW_STOCK_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MOVEMENTS_FIELD_NUMBER: _ClassVar[int]
    stock: Stock
    low_stock_threshold: int
    movements: _containers.RepeatedCompositeFieldContainer[Movement]
    def __init__(self, stock: _Optional[_Union[Stock, _Mapping]] = ..., low_stock_threshold: _Optional[int] = ..., movements: _Optional[_Iterable[_Union[Movement, _Mapping]]] = ...) -> None: ...

class RemoveStockRequest(_message.Message):
    __slots__ = ("product_id", "quantity", "reason")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    quantity: int
    reason: str
    def __init__(self, product_id: _Optional[str] = ..., quantity: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SetStocksRequest(_message.Message):
    __slots__ = ("product_ids", "quantity")
    PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    QUANTITY_FIELD_NUMBER: _ClassVar[int]
    product_ids: _containers.RepeatedScalarFieldContainer[str]
    quantity: int
    def __init__(self, product_ids: _Optional[_Iterable[str]] = ..., quantity: _Optional[int] = ...) -> None: ...

class SetStocksReply(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...
