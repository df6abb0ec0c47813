"""The CloudEvents 1.0 envelope every Mercato event travels in.

Structured mode (one JSON document) is used at rest: in the outbox, the audit log, dead
letters and over HTTP. Binary mode (attributes as headers, the payload as the body) is used on
the broker, as the CloudEvents AMQP, NATS and Kafka bindings describe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from mercato.platform.ids import new_id
from mercato.platform.times import rfc3339

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"
AMQP_PREFIX = "cloudEvents:"
NATS_PREFIX = "ce-"
KAFKA_PREFIX = "ce_"  # the CloudEvents Kafka binding's

_REQUIRED = ("id", "source", "type", "specversion")
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # compact, one encoder for all
_OPTIONAL_STR = ("subject", "correlationid", "causationid", "traceparent")


class EnvelopeError(ValueError):
    """A message that is not a valid Mercato CloudEvent (it goes to the dead-letter store)."""


@dataclass(frozen=True, slots=True)
class Envelope:
    type: str
    source: str
    data: dict[str, Any]
    subject: str | None = None
    id: str = field(default_factory=new_id)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    schemaversion: int = 1
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = None
    # The attributes and the data's JSON, made at the first encoding and kept: the outbox
    # writes an event in structured mode, then the relay hands the same event to the bus in
    # binary mode. (Not a field of the event: ``with_`` makes a new one, encoded afresh.) So
    # ``data`` must not change once the event is encoded; nothing changes an event's data
    # after its handler has published it.
    _encoded: tuple[dict[str, Any], str] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def caused(
        self, type: str, source: str, data: dict[str, Any], subject: str | None = None
    ) -> Envelope:
        """A new event caused by this one: same correlation and trace, causation = this id."""
        return Envelope(
            type=type,
            source=source,
            data=data,
            subject=subject,
            correlationid=self.correlationid or self.subject,
            causationid=self.id,
            traceparent=self.traceparent,
        )

    def with_(self, **changes: Any) -> Envelope:
        return replace(self, **changes)

    # -- structured mode ---------------------------------------------------------------
    def attributes(self) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": rfc3339(self.time),
            "datacontenttype": CONTENT_TYPE,
            "schemaversion": self.schemaversion,
        }
        for name in _OPTIONAL_STR:
            value = getattr(self, name)
            if value is not None:
                attrs[name] = value
        return attrs

    def _encoding(self) -> tuple[dict[str, Any], str]:
        encoded = self._encoded
        if encoded is None or not encoded[0]:
            # A received event keeps its body's text as its data's JSON (from_binary): the
            # audit log stores every event it receives, and need not encode data again.
            data = _dumps(self.data) if encoded is None else encoded[1]
            encoded = (self.attributes(), data)
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    def to_structured(self) -> dict[str, Any]:
        return {**self.attributes(), "data": self.data}

    def to_json(self) -> str:
        """The structured document, compact: the attributes, then ``data``."""
        attributes, data = self._encoding()
        return f'{_dumps(attributes)[:-1]},"data":{data}}}'

    @classmethod
    def from_structured(cls, doc: Mapping[str, Any]) -> Envelope:
        if not isinstance(doc, Mapping):
            raise EnvelopeError("a CloudEvent must be a JSON object")
        data = doc.get("data")
        if not isinstance(data, dict):
            raise EnvelopeError("'data' must be a JSON object")
        return cls._from_attributes(doc, data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Envelope:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise EnvelopeError(f"not JSON: {exc}") from exc
        return cls.from_structured(doc)

    # -- binary mode ---------------------------------------------------------------------
    def to_binary(self, prefix: str) -> tuple[dict[str, str], bytes]:
        attributes, data = self._encoding()
        headers = {prefix + k: str(v) for k, v in attributes.items()}
        headers["content-type"] = CONTENT_TYPE
        return headers, data.encode()

    @classmethod
    def from_binary(cls, headers: Mapping[str, Any], body: bytes, prefix: str) -> Envelope:
        attrs = {
            k[len(prefix) :]: v.decode() if isinstance(v, bytes) else v
            for k, v in headers.items()
            if k.startswith(prefix)
        }
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise EnvelopeError(f"body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise EnvelopeError("the event body must be a JSON object")
        envelope = cls._from_attributes(attrs, data)
        try:  # the data's JSON as it came (see _encoding); JSON may also be UTF-16 or -32
            object.__setattr__(envelope, "_encoded", ({}, body.decode()))
        except UnicodeDecodeError:
            pass
        return envelope

    @classmethod
    def _from_attributes(cls, attrs: Mapping[str, Any], data: dict[str, Any]) -> Envelope:
        missing = [name for name in _REQUIRED if not attrs.get(name)]
        if missing:
            raise EnvelopeError(f"missing CloudEvents attribute(s): {', '.join(missing)}")
        if attrs["specversion"] != SPECVERSION:
            raise EnvelopeError(f"unsupported specversion {attrs['specversion']!r}")
        for name in ("id", "source", "type", *_OPTIONAL_STR):
            value = attrs.get(name)
            if value is not None and not isinstance(value, str):
                raise EnvelopeError(f"attribute {name!r} must be a string")
        try:
            raw_time = attrs.get("time")
            when = (
                datetime.fromisoformat(str(raw_time).replace("Z", "+00:00"))
                if raw_time
                else datetime.now(UTC)
            )
            if when.tzinfo is None:
                raise EnvelopeError("attribute 'time' must carry a time zone")
            version = int(attrs.get("schemaversion", 1))
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"bad attribute: {exc}") from exc
        return cls(
            id=attrs["id"],
            source=attrs["source"],
            type=attrs["type"],
            data=data,
            subject=attrs.get("subject"),
            time=when.astimezone(UTC),
            schemaversion=version,
            correlationid=attrs.get("correlationid"),
            causationid=attrs.get("causationid"),
            traceparent=attrs.get("traceparent"),
        )
