"""The gateway alone, trusting a key of the test's (identity, and every other service, is
not there): what it decides before it calls anyone."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from mercato.platform.auth import JwksCache, TokenVerifier, install_verifier
from mercato.platform.signing import SigningKey, static_jwks
from mercato.services.gateway.service import service as gateway
from tests.support import running
from tests.support import test_settings as make_settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def key(tmp_path: Path) -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
async def signed(tmp_path: Path, key: SigningKey) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway that trusts ``key`` (identity itself is unreachable)."""
    settings = make_settings(tmp_path, grpc_targets=f"identity=127.0.0.1:{closed_port()}")
    async with running([gateway], settings) as (system, http):
        ctx = system.hosts["gateway"].ctx
        assert ctx is not None
        install_verifier(ctx, TokenVerifier(JwksCache(static_jwks(key))))
        yield http
