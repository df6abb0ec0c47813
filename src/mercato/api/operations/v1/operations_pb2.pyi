from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeadLetter(_message.Message):
    __slots__ = ("id", "service", "event_type", "event_id", "error", "attempts", "first_failed_at", "last_failed_at", "status", "discard_reason", "discarded_at", "redriven_at", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DISCARD_REASON_FIELD_NUMBER: _ClassVar[int]
    DISCARDED_AT_FIELD_NUMBER: _ClassVar[int]
    REDRIVEN_AT_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    id: str
    service: str
    event_type: str
    event_id: str
    error: str
    attempts: int
    first_failed_at: str
    last_failed_at: str
    status: str
    discard_reason: str
    discarded_at: str
    redriven_at: str
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, id: _Optional[str] = ..., service: _Optional[str] = ..., event_type: _Optional[str] = ..., event_id: _Optional[str] = ..., error: _Optional[str] = ..., attempts: _Optional[int] = ..., first_failed_at: _Optional[str] = ..., last_failed_at: _Optional[str] = ..., status: _Optional[str] = ..., discard_reason: _Optional[str] = ..., discarded_at: _Optional[str] = ..., redriven_at: _Optional[str] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ("event_type", "status", "limit", "before_failed_at", "before_id")
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FAILED_AT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    event_type: str
    status: str
    limit: int
    before_failed_at: str
    before_id: str
    def __init__(self, event_type: _Optional[str] = ..., status: _Optional[str] = ..., limit: _Optional[int] = ..., before_failed_at: _Optional[str] = ..., before_id: _Optional[str] = ...) -> None: ...

class ListDeadLettersReply(_message.Message):
    __slots__ = ("letters",)
    LETTERS_FIELD_NUMBER: _ClassVar[int]
    letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class DeadLetterRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DiscardDeadLetterRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceStatus(_message.Message):
    __slots__ = ("service", "ready", "not_ready_reason", "outbox_backlog", "oldest_unsent_age_seconds", "open_dead_letters")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    NOT_READY_REASON_FIELD_NUMBER: _ClassVar[int]
    OUTBOX_BACKLOG_FIELD_NUMBER: _ClassVar[int]
    OLDEST_UNSENT_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OPEN_DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    service: str
    ready: bool
    not_ready_reason: str
    outbox_backlog: int
    oldest_unsent_age_seconds: float
    open_dead_letters: int
    def __init__(self, service: _Optional[str] = ..., ready: _Optional[bool] = ..., not_ready_reason: _Optional[str] = ..., outbox_backlog: _Optional[int] = ..., oldest_unsent_age_seconds: _Optional[float] = ..., open_dead_letters: _Optional[int] = ...) -> None: ...
