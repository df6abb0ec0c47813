from mercato.api.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TokenizeCardRequest(_message.Message):
    __slots__ = ("card_number", "expiry", "cvc", "holder")
    CARD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    EXPIRY_FIELD_NUMBER: _ClassVar[int]
    CVC_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    card_number: str
    expiry: str
    cvc: str
    holder: str
    def __init__(self, card_number: _Optional[str] = ..., expiry: _Optional[str] = ..., cvc: _Optional[str] = ..., holder: _Optional[str] = ...) -> None: ...

class CardToken(_message.Message):
    __slots__ = ("token", "last4", "brand", "exp_month", "exp_year", "digest")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    LAST4_FIELD_NUMBER: _ClassVar[int]
    BRAND_FIELD_NUMBER: _ClassVar[int]
    EXP_MONTH_FIELD_NUMBER: _ClassVar[int]
    EXP_YEAR_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    token: str
    last4: str
    brand: str
    exp_month: int
    exp_year: int
    digest: str
    def __init__(self, token: _Optional[str] = ..., last4: _Optional[str] = ..., brand: _Optional[str] = ..., exp_month: _Optional[int] = ..., exp_year: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class GetPaymentRequest(_message.Message):
    __slots__ = ("payment_id", "order_id")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    order_id: str
    def __init__(self, payment_id: _Optional[str] = ..., order_id: _Optional[str] = ...) -> None: ...

class PaymentView(_message.Message):
    __slots__ = ("payment_id", "order_id", "user_id", "amount", "method", "last4", "status", "reason", "created_at", "updated_at", "authorized", "captured", "refunded", "refunds")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LAST4_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZED_FIELD_NUMBER: _ClassVar[int]
    CAPTURED_FIELD_NUMBER: _ClassVar[int]
    REFUNDED_FIELD_NUMBER: _ClassVar[int]
    REFUNDS_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    order_id: str
    user_id: str
    amount: _common_pb2.Money
    method: str
    last4: str
    status: str
    reason: str
    created_at: str
    updated_at: str
    authorized: _common_pb2.Money
    captured: _common_pb2.Money
    refunded: _common_pb2.Money
    refunds: _containers.RepeatedCompositeFieldContainer[Refund]
    def __init__(self, payment_id: _Optional[str] = ..., order_id: _Optional[str] = ..., user_id: _Optional[str] = ..., amount: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., method: _Optional[str] = ..., last4: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[str] = ..., updated_at: _Optional[str] = ..., authorized: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., captured: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., refunded: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., refunds: _Optional[_Iterable[_Union[Refund, _Mapping]]] = ...) -> None: ...

class Refund(_message.Message):
    __slots__ = ("amount", "reason", "at")
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    amount: _common_pb2.Money
    reason: str
    at: str
    def __init__(self, amount: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., reason: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class ListPaymentsRequest(_message.Message):
    __slots__ = ("page", "user_id", "order_id")
    PAGE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    user_id: str
    order_id: str
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., user_id: _Optional[str] = ..., order_id: _Optional[str] = ...) -> None: ...

class ListPaymentsReply(_message.Message):
    __slots__ = ("payments", "page")
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[PaymentView]
    page: _common_pb2.PageInfo
    def __init__(self, payments: _Optional[_Iterable[_Union[PaymentView, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageInfo, _Mapping]] = ...) -> None: ...

class GetWalletRequest(_message.Message):
    __slots__ = ("user_id", "entries")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    entries: int
    def __init__(self, user_id: _Optional[str] = ..., entries: _Optional[int] = ...) -> None: ...

class TopUpWalletRequest(_message.Message):
    __slots__ = ("user_id", "amount", "existing_only", "reason", "entries")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXISTING_ONLY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    amount: _common_pb2.Money
    existing_only: bool
    reason: str
    entries: int
    def __init__(self, user_id: _Optional[str] = ..., amount: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., existing_only: _Optional[bool] = ..., reason: _Optional[str] = ..., entries: _Optional[int] = ...) -> None: ...

class DebitWalletRequest(_message.Message):
    __slots__ = ("user_id", "amount", "reason")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    amount: _common_pb2.Money
    reason: str
    def __init__(self, user_id: _Optional[str] = ..., amount: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetUpWalletsRequest(_message.Message):
    __slots__ = ("user_ids", "balance")
    USER_IDS_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    user_ids: _containers.RepeatedScalarFieldContainer[str]
    balance: _common_pb2.Money
    def __init__(self, user_ids: _Optional[_Iterable[str]] = ..., balance: _Optional[_Union[_common_pb2.Money, _Mapping]] = ...) -> None: ...

class SetUpWalletsReply(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class WalletView(_message.Message):
    __slots__ = ("user_id", "balance", "exists", "entries")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    balance: _common_pb2.Money
    exists: bool
    entries: _containers.RepeatedCompositeFieldContainer[WalletEntry]
    def __init__(self, user_id: _Optional[str] = ..., balance: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., exists: _Optional[bool] = ..., entries: _Optional[_Iterable[_Union[WalletEntry, _Mapping]]] = ...) -> None: ...

class WalletEntry(_message.Message):
    __slots__ = ("id", "amount", "kind", "order_id", "payment_id", "reason", "at")
    ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    amount: _common_pb2.Money
    kind: str
    order_id: str
    payment_id: str
    reason: str
    at: str
    def __init__(self, id: _Optional[str] = ..., amount: _Optional[_Union[_common_pb2.Money, _Mapping]] = ..., kind: _Optional[str] = ..., order_id: _Optional[str] = ..., payment_id: _Optional[str] = ..., reason: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...
