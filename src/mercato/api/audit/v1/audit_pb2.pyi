from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class QueryEventsRequest(_message.Message):
    __slots__ = ("type", "subject", "correlation_id", "since", "until", "cursor", "limit")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    type: str
    subject: str
    correlation_id: str
    since: str
    until: str
    cursor: str
    limit: int
    def __init__(self, type: _Optional[str] = ..., subject: _Optional[str] = ..., correlation_id: _Optional[str] = ..., since: _Optional[str] = ..., until: _Optional[str] = ..., cursor: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class QueryEventsReply(_message.Message):
    __slots__ = ("events", "next_cursor")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedScalarFieldContainer[str]
    next_cursor: str
    def __init__(self, events: _Optional[_Iterable[str]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class OrderStoryRequest(_message.Message):
    __slots__ = ("order_id",)
    ORDER_ID_FIELD_NUMBER: _ClassVar[int]
    order_id: str
    def __init__(self, order_id: _Optional[str] = ...) -> None: ...

class StoryEvent(_message.Message):
    __slots__ = ("event", "since_first_ms")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIRST_MS_FIELD_NUMBER: _ClassVar[int]
    event: str
    since_first_ms: int
    def __init__(self, event: _Optional[str] = ..., since_first_ms: _Optional[int] = ...) -> None: ...

class OrderStoryReply(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[StoryEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[StoryEvent, _Mapping]]] = ...) -> None: ...
