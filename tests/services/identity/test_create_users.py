"""identity's CreateUsers: bulk accounts with chosen ids and no password (admin only)."""

from __future__ import annotations

from pathlib import Path

import grpc

from mercato.api.identity.v1 import identity_pb2 as pb
from tests.services.identity.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Identity,
    bearer,
    start_identity,
)
from tests.services.identity.test_identity import refused


def users(*ids: str) -> pb.CreateUsersRequest:
    return pb.CreateUsersRequest(
        users=[pb.NewUser(user_id=i, email=f"{i}@bulk.invalid", name="Bulk") for i in ids]
    )


async def admin(ident: Identity) -> list[tuple[str, str]]:
    return bearer((await ident.login(ADMIN_EMAIL, ADMIN_PASSWORD)).access_token)


async def test_bulk_users_are_made_once_and_announced(ident: Identity) -> None:
    token = await admin(ident)
    ids = [f"bulk-{i}" for i in range(1000)]
    reply = await ident.stub.CreateUsers(users(*ids), metadata=token)
    assert reply.created == 1000
    again = await ident.stub.CreateUsers(users("bulk-0", "bulk-999", "bulk-new"), metadata=token)
    assert again.created == 1
    created = [e.subject for e in await ident.events("UserCreated")]
    assert set(ids) | {"bulk-new"} <= set(created)
    assert len(created) == len(set(created))
    found = await ident.stub.GetUser(pb.GetUserRequest(user_id="bulk-999"), metadata=token)
    assert (found.email, found.roles) == ("bulk-999@bulk.invalid", ["customer"])


async def test_a_bulk_user_cannot_log_in(ident: Identity) -> None:
    await ident.stub.CreateUsers(users("nopass"), metadata=await admin(ident))
    for password in ("!", "", "correct horse 9"):
        login = ident.stub.Login(pb.LoginRequest(email="nopass@bulk.invalid", password=password))
        await refused(login, grpc.StatusCode.UNAUTHENTICATED)


async def test_bad_bulk_requests_create_nothing(ident: Identity) -> None:
    token = await admin(ident)
    for bad in (
        pb.CreateUsersRequest(),
        users(*(f"u{i}" for i in range(1001))),
        users("ok", ""),
        users("ok", "has space"),
        users("x" * 65),
        pb.CreateUsersRequest(users=[pb.NewUser(user_id="ok", email="nope", name="A")]),
        pb.CreateUsersRequest(users=[pb.NewUser(user_id="ok", email="a@b.invalid", name="")]),
    ):
        await refused(ident.stub.CreateUsers(bad, metadata=token), grpc.StatusCode.INVALID_ARGUMENT)
    await refused(
        ident.stub.GetUser(pb.GetUserRequest(user_id="ok"), metadata=token),
        grpc.StatusCode.NOT_FOUND,
    )
    customer = await ident.register("ada@example.com")
    assert customer
    tokens = await ident.login("ada@example.com")
    await refused(
        ident.stub.CreateUsers(users("mine"), metadata=bearer(tokens.access_token)),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_bulk_users_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    async for ident in start_identity(tmp_path, database_url=postgres_template):
        token = await admin(ident)
        reply = await ident.stub.CreateUsers(users("a", "b", "a"), metadata=token)
        assert reply.created == 2
        again = await ident.stub.CreateUsers(users("b", "c"), metadata=token)
        assert again.created == 1
