"""The CloudEvents envelope: structured at rest, binary on the wire, UUIDv7 ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mercato.platform.envelope import AMQP_PREFIX, NATS_PREFIX, Envelope, EnvelopeError
from mercato.platform.ids import new_id
from mercato.platform.unit_of_work import new_traceparent


def an_event() -> Envelope:
    return Envelope(
        type="OrderCreated",
        source="mercato/order",
        subject="order-1",
        data={"orderId": "order-1", "totalAmount": 400.5, "items": [{"productId": "p"}]},
        correlationid="order-1",
        causationid=new_id(),
        traceparent=new_traceparent(),
        schemaversion=2,
    )


def test_structured_round_trip_keeps_every_attribute_and_the_data() -> None:
    event = an_event()
    doc = event.to_structured()
    assert doc["specversion"] == "1.0" and doc["datacontenttype"] == "application/json"
    assert doc["time"].endswith("Z"), "RFC 3339 in UTC"
    assert Envelope.from_json(event.to_json()) == event


@pytest.mark.parametrize("prefix", [AMQP_PREFIX, NATS_PREFIX])
def test_binary_round_trip_with_each_binding_prefix(prefix: str) -> None:
    event = an_event()
    headers, body = event.to_binary(prefix)
    assert headers[prefix + "id"] == event.id and headers[prefix + "type"] == "OrderCreated"
    assert headers["content-type"] == "application/json"
    assert all(isinstance(v, str) for v in headers.values()), "header values travel as text"
    assert Envelope.from_binary(headers, body, prefix) == event
    # A broker may hand header values back as bytes.
    as_bytes = {k: v.encode() for k, v in headers.items()}
    assert Envelope.from_binary(as_bytes, body, prefix) == event


def test_one_encoding_serves_both_modes_and_each_is_the_plain_json_of_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The outbox writes an event structured, the bus then sends the same event binary: the
    data is encoded once, and both are what ``json.dumps`` makes of the document."""
    import json

    from mercato.platform import envelope as module

    encoded: list[object] = []
    dumps = module._dumps
    monkeypatch.setattr(module, "_dumps", lambda o: encoded.append(o) or dumps(o))
    event = an_event().with_(data={"name": "Lampe à poser", "n": 1, "none": None})
    doc = event.to_json()
    headers, body = event.to_binary(AMQP_PREFIX)
    assert doc == json.dumps(event.to_structured(), separators=(",", ":"))
    assert body == json.dumps(event.data, separators=(",", ":")).encode()
    assert [o for o in encoded if o is event.data] == [event.data]  # the data once
    assert Envelope.from_json(doc) == Envelope.from_binary(headers, body, AMQP_PREFIX) == event
    changed = event.with_(subject="order-2")  # a new event: encoded afresh
    assert Envelope.from_json(changed.to_json()).subject == "order-2"


def test_a_header_with_the_other_prefix_is_not_read() -> None:
    headers, body = an_event().to_binary(AMQP_PREFIX)
    with pytest.raises(EnvelopeError, match="missing"):
        Envelope.from_binary(headers, body, NATS_PREFIX)


def test_ids_are_uuid7_and_increase_in_creation_order() -> None:
    before = datetime.now(UTC)
    ids = [new_id() for _ in range(5000)]  # many share a millisecond
    after = datetime.now(UTC)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [str(u) for u in parsed] == ids, "the canonical text form"
    assert len(set(ids)) == len(ids)
    assert [u.int for u in parsed] == sorted(u.int for u in parsed), "monotonic"
    assert ids == sorted(ids), "the text form sorts the same way"
    first_ms = parsed[0].int >> 80
    assert before - timedelta(milliseconds=1) <= datetime.fromtimestamp(first_ms / 1000, UTC)
    assert datetime.fromtimestamp((parsed[-1].int >> 80) / 1000, UTC) <= after + timedelta(
        seconds=1
    )
    assert uuid.UUID(an_event().id).version == 7


def test_a_caused_event_carries_correlation_causation_and_the_trace() -> None:
    cause = an_event()
    effect = cause.caused("StockReserved", "mercato/inventory", {"orderId": "order-1"}, "order-1")
    assert effect.causationid == cause.id and effect.correlationid == "order-1"
    assert effect.traceparent == cause.traceparent and effect.id != cause.id


@pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
def test_a_missing_required_attribute_is_rejected_by_name(name: str) -> None:
    doc = an_event().to_structured()
    del doc[name]
    with pytest.raises(EnvelopeError, match=f"missing CloudEvents attribute.*{name}"):
        Envelope.from_structured(doc)
    headers, body = an_event().to_binary(AMQP_PREFIX)
    del headers[AMQP_PREFIX + name]
    with pytest.raises(EnvelopeError, match=name):
        Envelope.from_binary(headers, body, AMQP_PREFIX)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"specversion": "0.3"}, "specversion"),
        ({"data": [1, 2]}, "'data' must be a JSON object"),
        ({"time": "2024-05-01T10:00:00"}, "time zone"),
        ({"time": "yesterday"}, "bad attribute"),
        ({"schemaversion": "two"}, "bad attribute"),
        ({"id": 42}, "'id' must be a string"),
    ],
)
def test_bad_attributes_are_rejected(change: dict[str, Any], message: str) -> None:
    doc = {**an_event().to_structured(), **change}
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_structured(doc)


@pytest.mark.parametrize(
    ("body", "message"), [(b"\xff{", "body is not JSON"), (b"[1]", "must be a JSON object")]
)
def test_a_binary_body_that_is_not_a_json_object_is_rejected(body: bytes, message: str) -> None:
    headers, _ = an_event().to_binary(NATS_PREFIX)
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_binary(headers, body, NATS_PREFIX)


def test_text_that_is_not_json_is_rejected() -> None:
    with pytest.raises(EnvelopeError, match="not JSON"):
        Envelope.from_json("{oops")
