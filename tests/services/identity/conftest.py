"""identity running embedded (in-process bus, SQLite), driven over its real gRPC port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from sqlalchemy import select

from mercato.api.identity.v1 import identity_pb2 as pb
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.platform.auth import CLIENT_ADDRESS
from mercato.platform.envelope import Envelope
from mercato.platform.runtime.system import System
from mercato.platform.storage.tables import outbox
from mercato.services.identity.service import service as identity
from tests.support import test_settings as make_settings

ADMIN_EMAIL = "root@shop.example"
ADMIN_PASSWORD = "admin-pass-42"
PASSWORD = "correct horse 9"


@dataclass
class Identity:
    system: System
    stub: Any
    channel: grpc.aio.Channel

    async def events(self, event_type: str | None = None) -> list[Envelope]:
        ctx = self.system.hosts["identity"].ctx
        assert ctx is not None
        async with ctx.db.connect() as conn:
            rows = (await conn.execute(select(outbox.c.envelope).order_by(outbox.c.seq))).all()
        found = [Envelope.from_json(r.envelope) for r in rows]
        return [e for e in found if event_type is None or e.type == event_type]

    async def register(self, email: str, password: str = PASSWORD, name: str = "Ada") -> str:
        reply = await self.stub.Register(
            pb.RegisterRequest(email=email, password=password, name=name)
        )
        return str(reply.user_id)

    async def login(
        self, email: str, password: str = PASSWORD, address: str | None = None
    ) -> pb.TokenReply:
        """Sign in, as the gateway does for a client at ``address`` (or as a caller that
        names none)."""
        metadata = [(CLIENT_ADDRESS, address)] if address else None
        request = pb.LoginRequest(email=email, password=password)
        return await self.stub.Login(request, metadata=metadata)

    async def jwks(self) -> dict[str, Any]:
        return dict(json.loads((await self.stub.GetJwks(pb.GetJwksRequest())).jwks_json))


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def start_identity(data_dir: Path, **overrides: Any) -> AsyncIterator[Identity]:
    values: dict[str, Any] = {
        "admin_email": ADMIN_EMAIL,
        "admin_password": ADMIN_PASSWORD,
        "login_max_failures": 3,
        "login_delay": 60,
        "login_lockout": 60,
        **overrides,
    }
    settings = make_settings(data_dir, **values)
    system = System([identity], settings)
    async with system.running():
        target = system.grpc_targets["identity"]
        async with grpc.aio.insecure_channel(target) as channel:
            yield Identity(system, IdentityStub(channel), channel)


@pytest.fixture
async def ident(tmp_path: Path) -> AsyncIterator[Identity]:
    async for running in start_identity(tmp_path):
        yield running
