"""MERCATO_SMTP_URL and MERCATO_SMTP_FROM: read, or refused at start with the reason."""

from __future__ import annotations

import pytest

from mercato.platform.settings import ConfigError, load_settings, smtp_endpoint


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "starttls"),
    [
        ("smtp://127.0.0.1", "127.0.0.1", 25, False, None),
        ("smtp://mail.example.com:2525", "mail.example.com", 2525, False, None),
        ("smtp+starttls://mail.example.com", "mail.example.com", 587, False, True),
        ("smtps://mail.example.com", "mail.example.com", 465, True, False),
    ],
)
def test_an_smtp_url_names_host_port_and_tls(
    url: str, host: str, port: int, tls: bool, starttls: bool | None
) -> None:
    endpoint = smtp_endpoint(url)
    assert (endpoint.host, endpoint.port, endpoint.tls, endpoint.starttls) == (
        host,
        port,
        tls,
        starttls,
    )
    assert endpoint.username is None and endpoint.password is None


def test_credentials_are_read_decoded_and_never_shown() -> None:
    endpoint = smtp_endpoint("smtps://shop%40example.com:p%3Ass@mail.example.com:465")
    assert endpoint.username == "shop@example.com" and endpoint.password == "p:ss"
    assert "p:ss" not in endpoint.shown and "p%3Ass" not in endpoint.shown
    assert "p:ss" not in repr(endpoint)
    assert endpoint.shown == "smtps://shop@example.com:***@mail.example.com:465"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mail.example.com:25", "must be smtp://"),
        ("http://mail.example.com", "must be smtp://"),
        ("smtp://", "no host"),
        ("smtp://user:secret@mail.example.com:99999", "port"),
        ("smtp://mail.example.com:0", "port"),
        ("smtp://mail.example.com:x", "port"),
        ("smtp://user@mail.example.com", "both a user name and a password"),
        ("smtp://mail.example.com/inbox", "no path or query"),
    ],
)
def test_a_bad_smtp_url_stops_the_start_saying_why(
    url: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MERCATO_SMTP_URL", url)
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert "MERCATO_SMTP_URL" in str(refused.value) and says in str(refused.value)
    assert "secret" not in str(refused.value)


def test_a_bad_sender_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_SMTP_FROM", "Shop")
    with pytest.raises(ConfigError, match=r"MERCATO_SMTP_FROM.*not a mail address"):
        load_settings()
    monkeypatch.setenv("MERCATO_SMTP_FROM", "Shop <shop@example.com>")
    assert load_settings().smtp_from == "Shop <shop@example.com>"
