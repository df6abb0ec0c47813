"""Configuration: ``MERCATO_*`` environment variables, over a TOML file named by ``MERCATO_CONFIG``.

Bad configuration is a ``ConfigError`` at start, naming the setting and what is wrong with it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

BROKER_SCHEMES = ("memory", "amqp", "amqps", "nats", "tls", "kafka")
DATABASE_SCHEMES = ("postgresql", "postgres", "sqlite")


class ConfigError(ValueError):
    pass


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MERCATO_", extra="forbid", frozen=True)

    # One broker, or the nodes of a cluster: "nats://h1:4222,nats://h2:4222" (a node given as
    # host:port takes everything else from the first URL: "amqp://u:p@h1:5672/shop,h2:5672").
    broker_url: str = "memory://"
    # NATS: copies of each JetStream stream kept on the cluster's servers (3 on a 3-node cluster
    # loses nothing when one node dies); at most the number of servers with JetStream.
    nats_replicas: int = Field(1, ge=1, le=5)
    # Kafka: the producer is idempotent (no duplicate from its own retries) unless this is off,
    # for brokers without InitProducerId (Tansu); partitions of each event type's topic (the
    # most replicas of one service that share the work) and copies of each, at creation.
    kafka_idempotence: bool = True
    kafka_partitions: int = Field(3, ge=1, le=1000)
    kafka_replicas: int = Field(1, ge=1, le=7)
    database_url: str | None = None
    # PostgreSQL: the most connections one service's pool opens in one process (the relay's
    # lock connection is one more). With replicas of every service, size it so that all the
    # processes together stay under the server's max_connections (100 by default).
    database_pool_size: int = Field(20, ge=1, le=1000)
    data_dir: Path = Path(".mercato")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(0, ge=0, le=65535, description="0 = any free port")
    # Where other services answer gRPC: "catalog=127.0.0.1:50101,cart=127.0.0.1:50102".
    # Embedded, every service's own address is added at start; several replicas of one service
    # are listed as "catalog=ipv4:127.0.0.1:50101,127.0.0.1:50111" (round-robin).
    grpc_targets: str = ""
    admin_email: str | None = None
    admin_password: str | None = None
    # identity: the PEM private key (Ed25519, or RSA ≥ 2048 bits) that signs access tokens,
    # inline or in a file; with neither, one is generated once and kept in the data directory.
    jwt_private_key: str | None = Field(None, repr=False)
    jwt_private_key_file: Path | None = None
    # payment: the key of the card digests that tell a retried checkout's card from another
    # (any string); with none, one is generated once and kept in the data directory.
    card_digest_key: str | None = Field(None, repr=False)
    # Nothing revokes an access token before it expires: this bounds how long one outlives a
    # sign-out or a change of roles (docs/security.md weighs it against refreshes).
    access_token_ttl: int = Field(300, ge=30, le=86_400, description="seconds")
    refresh_token_ttl: int = Field(14 * 86_400, ge=60, le=365 * 86_400, description="seconds")
    # identity: failed logins from one address for one account before it waits (login_delay
    # seconds, then twice as long after each further failure, up to login_lockout seconds).
    login_max_failures: int = Field(5, ge=1, le=1000)
    login_delay: float = Field(1, ge=0, le=86_400, description="the first wait, seconds")
    login_lockout: float = Field(300, ge=0, le=86_400, description="the longest wait, seconds")
    # gateway: CORS origins ("https://a.example,https://b.example", "*" for any; empty = none),
    # login/registration attempts per client address per minute, gRPC call deadline (seconds).
    cors_origins: str = ""
    # gateway: the proxies whose X-Forwarded-For is believed ("10.0.0.5,10.1.0.0/16"; empty =
    # none, the client's address is the connection's peer).
    trusted_proxies: str = ""
    auth_rate_limit: int = Field(20, ge=1, le=100_000)
    grpc_deadline: float = Field(5.0, gt=0, le=120)
    # gateway: the largest request body taken (bytes); a larger one is answered 413 unread.
    max_body_bytes: int = Field(1_048_576, ge=1024, le=1 << 30)
    demo_catalog: bool = True
    # catalog: how often it reads its version for the gateways that watch it (seconds): a
    # kept page of products is sent without asking the catalog while the version it was
    # read at is the latest the gateway has been told of. 0: the gateways ask every time.
    catalog_watch_interval: float = Field(0.1, ge=0, le=10)
    # gateway: serve the WDM benchmark's API (no credentials; see services/gateway/wdm.py).
    wdm_api: bool = False
    # cart: seconds a cart with items may sit untouched before CartAbandoned is published.
    cart_abandon_after: float = Field(3600, gt=0, le=30 * 86_400)
    stock_low_threshold: int = Field(5, ge=0, le=1_000_000)  # inventory: StockLow below it
    carrier_delay: str = "5"
    # order: seconds each saga step (payment, stock reservation, hand-over to shipping) may
    # take before the order is cancelled with compensation.
    order_payment_timeout: float = Field(300, gt=0, le=30 * 86_400)
    order_reservation_timeout: float = Field(300, gt=0, le=30 * 86_400)
    order_shipment_timeout: float = Field(300, gt=0, le=30 * 86_400)
    # audit: how long the event log keeps an event (by its time): "30d", "12h", "90m", "2w";
    # "forever" (or empty) keeps everything.
    audit_retention: str = "forever"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    max_attempts: int = Field(5, ge=1, le=100)
    retry_base_delay: float = Field(0.2, ge=0, le=60)
    batch_size: int = Field(100, ge=1, le=10_000)
    relay_poll_interval: float = Field(0.5, gt=0, le=60)
    shutdown_timeout: float = Field(10.0, gt=0, le=600)
    # `up --processes`: a child that exits unasked starts again after restart_delay seconds,
    # doubling up to restart_delay_max; after restart_limit exits within restart_window
    # seconds the supervisor gives up and stops everything.
    restart_delay: float = Field(0.5, gt=0, le=3600)
    restart_delay_max: float = Field(30.0, gt=0, le=3600)
    restart_limit: int = Field(5, ge=1, le=100)
    restart_window: float = Field(60.0, gt=0, le=86_400)
    # notification: the SMTP server mail goes through ("smtp://user:pass@host:587" STARTTLS when
    # offered, "smtp+starttls://…" STARTTLS required, "smtps://host:465" TLS from the start);
    # unset = no mail is sent: each is written as an .eml file under the data directory.
    smtp_url: str | None = Field(None, repr=False)
    smtp_from: str = "Mercato <no-reply@mercato.local>"
    smtp_timeout: float = Field(10.0, gt=0, le=300, description="seconds")
    # notification: sends of one mail before it is a dead letter, the first wait (doubling).
    mail_max_attempts: int = Field(8, ge=1, le=100)
    mail_retry_base_delay: float = Field(5.0, ge=0, le=3600, description="seconds")
    # webhooks: deliver to targets that resolve to private, loopback or link-local addresses
    # (tests, a receiver on the same network); refused by default, at creation and delivery.
    webhook_allow_private_targets: bool = False
    # webhooks: attempts per delivery, the first retry's delay doubling up to the longest
    # (seconds, each with jitter): the defaults spread 15 attempts over about a day.
    webhook_max_attempts: int = Field(15, ge=1, le=100)
    webhook_retry_base: float = Field(30.0, ge=0, le=86_400)
    webhook_retry_max: float = Field(4 * 3600.0, ge=0, le=7 * 86_400)
    # webhooks: one POST's bound (seconds), the bytes of an answer read, deliveries in flight
    # per endpoint and per process, the pause between looks for due deliveries (seconds).
    webhook_timeout: float = Field(10.0, gt=0, le=120)
    webhook_response_limit: int = Field(4096, ge=0, le=1 << 20)
    webhook_endpoint_concurrency: int = Field(16, ge=1, le=100)
    webhook_concurrency: int = Field(64, ge=1, le=1000)
    webhook_poll_interval: float = Field(1.0, gt=0, le=60)
    # webhooks: seconds an event waits after it was made before it is sent, so that an earlier
    # event of its subject, consumed by another replica at the same moment, goes out first.
    webhook_order_settle: float = Field(1.0, ge=0, le=60)
    # webhooks: the circuit breaker: an endpoint failing this many times in a row is paused
    # for webhook_breaker_pause seconds (then tried again).
    webhook_breaker_failures: int = Field(20, ge=1, le=10_000)
    webhook_breaker_pause: float = Field(600.0, ge=0, le=7 * 86_400)
    # webhooks: how long a delivered delivery and its attempts are kept after its delivery,
    # as audit_retention ("forever" keeps them); dead deliveries are kept until redriven.
    webhook_retention: str = "30d"

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        broker_urls(value)
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        scheme = (value or "").partition("://")[0].partition("+")[0]
        if value and ("://" not in value or scheme not in DATABASE_SCHEMES):
            raise ValueError(
                "must be postgresql://user@host:5432/mercato_{service} or "
                "sqlite:////path/{service}.db (unset = SQLite files in the data directory)"
            )
        if value:
            try:
                make_url(value)
            except (ArgumentError, ValueError) as exc:
                raise ValueError(f"not a database URL ({exc})") from None
        return value

    @field_validator("carrier_delay")
    @classmethod
    def _delay(cls, value: str) -> str:
        if value != "never":
            try:
                if float(value) < 0:
                    raise ValueError
            except ValueError:
                raise ValueError("must be a number of seconds ≥ 0, or 'never'") from None
        return value

    @field_validator("audit_retention", "webhook_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        retention_seconds(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or network") from None
        return value

    @field_validator("restart_delay_max")
    @classmethod
    def _longest_delay(cls, value: float, info: ValidationInfo) -> float:
        first = info.data.get("restart_delay")
        if first is not None and value < first:
            raise ValueError(f"must be ≥ MERCATO_RESTART_DELAY ({first:g})")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, value: str | None) -> str | None:
        if value:
            smtp_endpoint(value)
        return value

    @field_validator("smtp_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        _, address = parseaddr(value)
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", address):
            raise ValueError(f"{value!r} is not a mail address (e.g. Shop <shop@example.com>)")
        return value

    @field_validator("grpc_targets")
    @classmethod
    def _targets(cls, value: str) -> str:
        parse_targets(value)
        return value

    @property
    def broker_kind(self) -> str:
        return _kind(self.broker_url.partition("://")[0])

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """Every node's URL (one for a single broker)."""
        return broker_urls(self.broker_url)

    @property
    def broker_shown(self) -> str:
        """The broker's nodes as a log line or a banner may show them: no password."""
        return ",".join(_without_password(url) for url in self.broker_urls)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("MERCATO_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.netloc.rpartition("@")[0].partition(":")[0]
    return parts._replace(netloc=f"{user}:***@{parts.netloc.rpartition('@')[2]}").geturl()


def _kind(scheme: str) -> str:
    return {"amqps": "amqp", "tls": "nats"}.get(scheme, scheme)


def broker_urls(value: str) -> tuple[str, ...]:
    """The broker's URL, or its cluster's: comma-separated, each node a full URL of one kind of
    broker, or ``host:port``, which takes the first URL's scheme, credentials, virtual host and
    query. Raises ``ValueError`` saying which node is wrong (never echoing a password)."""
    usage = "must be memory://, amqp://user:pass@host:5672/, nats://host:4222 or "
    usage += "kafka://host:9092 (a cluster: "
    usage += "several, comma-separated)"
    parts = [part.strip() for part in value.split(",")]
    if not value.strip() or "" in parts:
        raise ValueError(f"{usage}; got an empty URL")
    first = urlsplit(parts[0])
    if "://" not in parts[0] or first.scheme not in BROKER_SCHEMES:
        raise ValueError(usage)
    if first.scheme == "memory":
        if len(parts) > 1:
            raise ValueError("memory:// is one in-process bus: it cannot be part of a cluster")
        return (parts[0],)
    urls = []
    for number, part in enumerate(parts, 1):
        if "://" not in part:  # host:port: the rest as in the first URL
            if any(c in part for c in "/?#@"):
                raise ValueError(f"node {number}: host:port, or a full {first.scheme}:// URL")
            userinfo = first.netloc.rpartition("@")[0]
            netloc = f"{userinfo}@{part}" if userinfo else part
            part = first._replace(netloc=netloc).geturl()
        node = urlsplit(part)
        if _kind(node.scheme) != _kind(first.scheme):
            raise ValueError(f"node {number}: every node of a cluster is a {first.scheme}:// URL")
        try:
            node.port  # noqa: B018 -- parses the port, which may be wrong
        except ValueError:
            raise ValueError(f"node {number}: not a port in {node.hostname}:…") from None
        if not node.hostname:
            raise ValueError(f"node {number}: no host (expected {first.scheme}://host:port)")
        urls.append(part)
    return tuple(urls)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def retention_seconds(value: str) -> float | None:
    """A retention as seconds ("30d" → 2 592 000), None for "forever" or empty; ValueError
    saying what is expected otherwise."""
    text = value.strip().lower()
    if text in ("", "forever"):
        return None
    number, unit = text[:-1], text[-1:]
    try:
        amount = float(number) if unit in _UNITS else float("nan")
    except ValueError:
        amount = float("nan")
    if not amount > 0 or amount == float("inf"):
        raise ValueError(
            f"{value!r} is not a retention: a number > 0 and a unit, s, m, h, d or w "
            "(e.g. 30d, 12h), or 'forever'"
        )
    return amount * _UNITS[unit]


SMTP_SCHEMES = {"smtp": None, "smtp+starttls": True, "smtps": False}


@dataclass(frozen=True)
class SmtpEndpoint:
    """Where and how to send mail. ``starttls``: None = when the server offers it, True =
    required; ``tls``: TLS from the first byte (smtps)."""

    host: str
    port: int
    tls: bool
    starttls: bool | None
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        scheme = "smtps" if self.tls else "smtp+starttls" if self.starttls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"{scheme}://{user}{self.host}:{self.port}"


def smtp_endpoint(value: str) -> SmtpEndpoint:
    """``MERCATO_SMTP_URL`` read; ``ValueError`` saying what is wrong (never the password)."""
    usage = "must be smtp://[user:pass@]host[:port], smtp+starttls://… or smtps://…"
    parts = urlsplit(value.strip())
    if "://" not in value or parts.scheme not in SMTP_SCHEMES:
        raise ValueError(usage)
    if not parts.hostname:
        raise ValueError(f"no host ({usage})")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the port is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("the port is not a number from 1 to 65535")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"no path or query is taken ({usage})")
    user, password = parts.username, parts.password
    if (user is None) != (password is None) or user == "":
        raise ValueError("give both a user name and a password (smtp://user:pass@host), or none")
    tls = parts.scheme == "smtps"
    return SmtpEndpoint(
        host=parts.hostname,
        port=port or (465 if tls else 587 if parts.scheme == "smtp+starttls" else 25),
        tls=tls,
        starttls=SMTP_SCHEMES[parts.scheme],
        username=unquote(user) if user is not None else None,
        password=unquote(password) if password is not None else None,
    )


def parse_targets(value: str) -> dict[str, str]:
    """``name=target`` pairs, comma-separated; a target may itself hold commas (ipv4:a,b)."""
    targets: dict[str, str] = {}
    current: str | None = None
    for part in filter(None, (p.strip() for p in value.split(","))):
        name, sep, target = part.partition("=")
        if sep:
            if not name or not target:
                raise ValueError(f"expected name=host:port, got {part!r}")
            current = name
            targets[name] = target
        elif current is not None:
            targets[current] += "," + part
        else:
            raise ValueError(f"expected name=host:port, got {part!r}")
    return targets


def load_settings(**overrides: Any) -> Settings:
    config_file = os.environ.get("MERCATO_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"MERCATO_CONFIG: no such file {config_file!r}")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = "_".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden" and config_file:  # a key the file should not have
                lines.append(f"{key!r} in MERCATO_CONFIG ({config_file}): unknown setting")
            else:
                lines.append(f"MERCATO_{key.upper()}: {err['msg']}")
        raise ConfigError("bad configuration:\n  " + "\n  ".join(lines)) from None
    except Exception as exc:  # a TOML file that does not parse
        where = f"MERCATO_CONFIG: {config_file!r} is not valid TOML" if config_file else "bad"
        raise ConfigError(f"{where}: {exc}") from None
