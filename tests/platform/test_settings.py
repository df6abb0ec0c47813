"""Configuration: environment over config file over defaults; bad configuration stops the start.

The command-line cases run the real ``python -m mercato`` so that what is checked is what an
operator sees: exit code ≠ 0, the variable named, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mercato.platform.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MERCATO_"):
            monkeypatch.delenv(name)


def test_environment_wins_over_the_config_file_which_wins_over_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "mercato.toml"
    config.write_text('port = 9100\nbroker_url = "nats://127.0.0.1:4222"\nmax_attempts = 7\n')
    monkeypatch.setenv("MERCATO_CONFIG", str(config))
    monkeypatch.setenv("MERCATO_PORT", "9200")
    settings = load_settings()
    assert settings.port == 9200
    assert settings.broker_url == "nats://127.0.0.1:4222" and settings.broker_kind == "nats"
    assert settings.max_attempts == 7
    assert settings.retry_base_delay == 0.2 and settings.database_url is None
    assert load_settings(port=9300).port == 9300, "command-line options win over both"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("MERCATO_BROKER_URL", "ftp://x", "MERCATO_BROKER_URL"),
        ("MERCATO_PORT", "abc", "MERCATO_PORT"),
        ("MERCATO_PORT", "70000", "MERCATO_PORT"),
        ("MERCATO_DATABASE_URL", "mysql://root@localhost/shop", "MERCATO_DATABASE_URL"),
        ("MERCATO_DATABASE_URL", "postgresql://h:port/db", "MERCATO_DATABASE_URL"),
        ("MERCATO_MAX_ATTEMPTS", "0", "MERCATO_MAX_ATTEMPTS"),
        ("MERCATO_DATABASE_POOL_SIZE", "0", "MERCATO_DATABASE_POOL_SIZE"),
        ("MERCATO_CARRIER_DELAY", "soon", "MERCATO_CARRIER_DELAY"),
        ("MERCATO_CONFIG", "/no/such/mercato.toml", "MERCATO_CONFIG"),
        ("MERCATO_NATS_REPLICAS", "0", "MERCATO_NATS_REPLICAS"),
        ("MERCATO_NATS_REPLICAS", "7", "MERCATO_NATS_REPLICAS"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()


def test_a_cluster_is_several_broker_urls_and_a_bare_node_borrows_the_first_ones_parts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MERCATO_BROKER_URL", "nats://h1:4222, h2:4223,tls://h3:4224")
    monkeypatch.setenv("MERCATO_NATS_REPLICAS", "3")
    settings = load_settings()
    assert settings.broker_kind == "nats" and settings.nats_replicas == 3
    assert settings.broker_urls == ("nats://h1:4222", "nats://h2:4223", "tls://h3:4224")
    monkeypatch.setenv("MERCATO_BROKER_URL", "amqp://shop:pw@h1:5672/prod?heartbeat=5,h2:5673")
    assert load_settings().broker_urls == (
        "amqp://shop:pw@h1:5672/prod?heartbeat=5",
        "amqp://shop:pw@h2:5673/prod?heartbeat=5",
    )
    assert load_settings().broker_shown == (
        "amqp://shop:***@h1:5672/prod?heartbeat=5,amqp://shop:***@h2:5673/prod?heartbeat=5"
    ), "what a banner shows names no password"
    monkeypatch.setenv("MERCATO_BROKER_URL", "memory://")
    assert load_settings().broker_urls == ("memory://",)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("nats://h1:4222,", "empty URL"),
        ("nats://h1:4222,,nats://h2:4222", "empty URL"),
        ("nats://h1:4222,amqp://h2:5672/", "node 2: every node of a cluster is a nats:// URL"),
        ("amqp://u:secret@h1:5672/,h2:56x2", "node 2: not a port"),
        ("amqp://u:secret@h1:5672/,h2:5672/other", "node 2: host:port, or a full amqp:// URL"),
        ("amqp://u:secret@h1:5672/,u@h2:5672", "node 2: host:port, or a full amqp:// URL"),
        ("nats://:4222,nats://h2:4222", "node 1: no host"),
        ("memory://,nats://h2:4222", "memory:// is one in-process bus"),
        ("h1:4222,h2:4222", "must be memory://"),
    ],
)
def test_a_bad_cluster_url_names_the_setting_and_the_node_without_the_password(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("MERCATO_BROKER_URL", value)
    with pytest.raises(ConfigError, match="MERCATO_BROKER_URL") as caught:
        load_settings()
    assert says in str(caught.value) and "secret" not in str(caught.value)


def test_good_database_urls_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("postgresql://root@127.0.0.1:5432/m_{service}", "sqlite:////tmp/{service}.db"):
        monkeypatch.setenv("MERCATO_DATABASE_URL", url)
        assert load_settings().database_url == url


def test_a_config_file_that_does_not_parse_or_has_unknown_keys_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("port = [\n")
    monkeypatch.setenv("MERCATO_CONFIG", str(broken))
    with pytest.raises(ConfigError, match=r"MERCATO_CONFIG.*broken\.toml.*not valid TOML"):
        load_settings()
    typo = tmp_path / "typo.toml"
    typo.write_text("prot = 8001\n")
    monkeypatch.setenv("MERCATO_CONFIG", str(typo))
    with pytest.raises(ConfigError, match=r"'prot' in MERCATO_CONFIG .*typo\.toml.*unknown"):
        load_settings()


def test_bad_configuration_stops_serve_and_up_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text("port = [\n")
    cases = [
        ({"MERCATO_BROKER_URL": "ftp://x"}, "MERCATO_BROKER_URL"),
        ({"MERCATO_PORT": "abc"}, "MERCATO_PORT"),
        ({"MERCATO_CONFIG": str(tmp_path / "missing.toml")}, "MERCATO_CONFIG"),
        ({"MERCATO_CONFIG": str(tmp_path / "broken.toml")}, "MERCATO_CONFIG"),
        ({"MERCATO_DATABASE_URL": "mysql://root@localhost/shop"}, "MERCATO_DATABASE_URL"),
    ]
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("MERCATO_") and k != "PYTHONPATH"
    }
    base |= {"MERCATO_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    # Every case through `serve`; two through `up` (each process costs a second of start-up).
    serve, up = ["serve", "tests.demo.tally:service"], ["up"]
    runs = [(serve, named, _start(serve, {**base, **env})) for env, named in cases]
    runs += [(up, named, _start(up, {**base, **env})) for env, named in cases[1::2]]
    for command, named, proc in runs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"mercato {' '.join(command)} started despite bad {named}")
        text = " ".join((out + err).split())
        assert proc.returncode not in (0, None), (command, named, text)
        assert named in text, (command, named, text)
        assert "Traceback" not in text, (command, named, text)
    assert not (tmp_path / "data").exists(), "nothing was created before the check"


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mercato", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("name", ["MERCATO_AUDIT_RETENTION", "MERCATO_WEBHOOK_RETENTION"])
def test_a_bad_retention_is_a_clear_error_at_start(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    for bad in ("30", "thirty days", "-1d", "0h", "5y"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ConfigError, match=name):
            load_settings()
    monkeypatch.setenv(name, "12h")
    assert getattr(load_settings(), name.removeprefix("MERCATO_").lower()) == "12h"
