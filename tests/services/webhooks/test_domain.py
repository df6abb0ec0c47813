"""webhooks' rules: Standard Webhooks signatures (checked with the receivers' own library), the
retry schedule, the addresses a target may not reach, what a subscription may ask for."""

from __future__ import annotations

import random

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mercato.contracts.events import REGISTRY
from mercato.services.webhooks.domain import (
    Schedule,
    SubscriptionError,
    event_types,
    forbidden_address,
    new_secret,
    signatures,
    target_host,
    wants,
)

BODY = b'{"specversion":"1.0","id":"e-1","type":"OrderCreated","data":{}}'


def headers(
    secrets: list[str], webhook_id: str = "msg_1", timestamp: int | None = None
) -> dict[str, str]:
    import time

    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signatures(secrets, webhook_id, ts, BODY),
    }


def test_a_signature_is_accepted_by_the_standard_webhooks_library() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert Webhook(secret).verify(BODY, headers([secret]))["id"] == "e-1"


def test_a_tampered_body_or_another_secret_is_refused() -> None:
    secret = new_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY + b" ", headers([secret]))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers([secret]))


def test_during_a_rotation_both_secrets_sign() -> None:
    old, new = new_secret(), new_secret()
    signed = headers([new, old])
    assert signed["webhook-signature"].count("v1,") == 2
    Webhook(old).verify(BODY, signed)
    Webhook(new).verify(BODY, signed)


def test_the_schedule_doubles_with_jitter_up_to_the_longest_then_gives_up() -> None:
    schedule = Schedule(attempts=15, base=30, longest=4 * 3600)
    rng = random.Random(7)
    for failed in range(1, 15):
        full = min(30 * 2 ** (failed - 1), 4 * 3600)
        delay = schedule.delay(failed, rng)
        assert delay is not None and full / 2 <= delay <= full
    assert schedule.delay(15) is None
    # The defaults spread the attempts over about a day.
    longest = sum(min(30 * 2 ** (n - 1), 4 * 3600) for n in range(1, 15))
    assert 20 * 3600 < longest < 30 * 3600


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "fd00::1",
        "224.0.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_forbidden(address: str) -> None:
    assert forbidden_address(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert forbidden_address(address) is None


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "http:///nohost", "example.com/x", "http://h/x#f", "http://h:no/"],
)
def test_a_target_must_be_an_http_url_with_a_host(url: str) -> None:
    with pytest.raises(SubscriptionError):
        target_host(url)


def test_event_types_are_known_names_or_every_type_alone() -> None:
    assert event_types([" OrderCreated", "OrderPaid", "OrderCreated"], REGISTRY) == [
        "OrderCreated",
        "OrderPaid",
    ]
    assert event_types(["*"], REGISTRY) == ["*"]
    for bad in ([], [" "], ["OrderMade"], ["*", "OrderPaid"]):
        with pytest.raises(SubscriptionError):
            event_types(bad, REGISTRY)


def test_a_subscription_wants_its_types_and_its_subject_only() -> None:
    assert wants(["*"], None, "OrderPaid", "o-1")
    assert wants(["OrderPaid"], "o-1", "OrderPaid", "o-1")
    assert not wants(["OrderPaid"], "o-2", "OrderPaid", "o-1")
    assert not wants(["OrderCreated"], None, "OrderPaid", "o-1")
