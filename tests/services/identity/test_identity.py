"""identity over gRPC: accounts, logins with throttling, refresh-token rotation and reuse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from sqlalchemy import update

from mercato.api.identity.v1 import identity_pb2 as pb
from mercato.platform.auth import JwksCache, TokenVerifier
from mercato.services.identity.domain import Invalid, Throttle, check_password
from mercato.services.identity.tables import refresh_tokens
from tests.services.identity.conftest import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    PASSWORD,
    Identity,
    bearer,
)


async def refused(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    return info.value


async def test_register_then_login_gives_tokens_that_verify_with_the_jwks(ident: Identity) -> None:
    user_id = await ident.register(" Ada@Example.com ")
    tokens = await ident.login("ada@example.com")
    # Five minutes: how long a token outlives a sign-out or a demotion (docs/security.md).
    assert tokens.token_type == "Bearer" and tokens.expires_in == 300

    async def fetch():  # type: ignore[no-untyped-def]
        return await ident.jwks()

    caller = await TokenVerifier(JwksCache(fetch)).verify(tokens.access_token)
    assert caller.user_id == user_id and caller.roles == {"customer"}
    created = (await ident.events("UserCreated"))[-1]
    assert created.data == {"userId": user_id, "email": "ada@example.com", "name": "Ada"}
    assert (await ident.events("UserAuthenticated"))[-1].data == {"userId": user_id}


@pytest.mark.parametrize(
    ("email", "password", "name"),
    [
        ("not-an-email", PASSWORD, "Ada"),
        ("ada@example.com", "short1", "Ada"),
        ("ada@example.com", "onlyletters", "Ada"),
        ("ada@example.com", "12345678901", "Ada"),
        ("adalovelace@example.com", "adalovelace1", "Ada"),
        ("ada@example.com", "x1" * 65, "Ada"),
        ("ada@example.com", PASSWORD, "  "),
    ],
)
async def test_bad_registrations_are_invalid_and_create_nothing(
    ident: Identity, email: str, password: str, name: str
) -> None:
    request = pb.RegisterRequest(email=email, password=password, name=name)
    await refused(ident.stub.Register(request), grpc.StatusCode.INVALID_ARGUMENT)
    assert [e.data["email"] for e in await ident.events("UserCreated")] == [ADMIN_EMAIL]


async def test_an_email_registers_once(ident: Identity) -> None:
    await ident.register("ada@example.com")
    await refused(
        ident.stub.Register(
            pb.RegisterRequest(email="ADA@example.com", password=PASSWORD, name="A")
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )


async def test_a_retried_registration_with_its_idempotency_key_gets_the_same_answer(
    ident: Identity,
) -> None:
    request = pb.RegisterRequest(email="ada@example.com", password=PASSWORD, name="Ada")
    key = [("idempotency-key", "signup-1")]
    first = await ident.stub.Register(request, metadata=key)
    again = await ident.stub.Register(request, metadata=key)
    assert first.user_id == again.user_id
    other = pb.RegisterRequest(email="bob@example.com", password=PASSWORD, name="Bob")
    await refused(ident.stub.Register(other, metadata=key), grpc.StatusCode.INVALID_ARGUMENT)
    assert len(await ident.events("UserCreated")) == 2  # the admin and Ada


async def test_wrong_passwords_are_counted_then_the_account_waits(ident: Identity) -> None:
    await ident.register("ada@example.com")
    for _ in range(3):
        await refused(
            ident.login("ada@example.com", "wrong pass 1"), grpc.StatusCode.UNAUTHENTICATED
        )
    error = await refused(ident.login("ada@example.com"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert dict(error.trailing_metadata())["retry-after"] in {"59", "60"}
    reasons = [e.data["reason"] for e in await ident.events("LoginFailed")]
    assert reasons == ["wrong_password"] * 3 + ["throttled"]


async def test_failures_from_one_address_do_not_make_the_owner_wait_elsewhere(
    ident: Identity,
) -> None:
    await ident.register("ada@example.com")
    for _ in range(3):
        await refused(
            ident.login("ada@example.com", "wrong pass 1", address="203.0.113.66"),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    await refused(
        ident.login("ada@example.com", address="203.0.113.66"), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert (await ident.login("ada@example.com", address="198.51.100.7")).access_token


def test_each_failure_past_the_limit_doubles_the_wait() -> None:
    throttle = Throttle(3, timedelta(seconds=1), timedelta(seconds=300))
    now = datetime(2026, 12, 7, tzinfo=UTC)
    waits = [throttle.locked_until(n, now) for n in range(1, 14)]
    assert waits[:2] == [None, None]
    seconds = [(w - now).total_seconds() for w in waits[2:] if w is not None]
    assert seconds == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]


async def test_a_success_clears_the_failure_count(ident: Identity) -> None:
    await ident.register("ada@example.com")
    for _ in range(2):
        await refused(
            ident.login("ada@example.com", "wrong pass 1"), grpc.StatusCode.UNAUTHENTICATED
        )
    await ident.login("ada@example.com")
    for _ in range(2):
        await refused(
            ident.login("ada@example.com", "wrong pass 1"), grpc.StatusCode.UNAUTHENTICATED
        )
    await ident.login("ada@example.com")


async def test_unknown_emails_fail_like_wrong_passwords_and_are_throttled_too(
    ident: Identity,
) -> None:
    errors = [
        await refused(ident.login("nobody@example.com"), grpc.StatusCode.UNAUTHENTICATED)
        for _ in range(3)
    ]
    assert {e.details() for e in errors} == {"wrong email or password"}
    await refused(ident.login("nobody@example.com"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert next(e.data for e in await ident.events("LoginFailed")) == {
        "email": "nobody@example.com",
        "reason": "unknown_email",
    }


async def test_refresh_rotates_and_a_reused_token_revokes_the_family(ident: Identity) -> None:
    await ident.register("ada@example.com")
    first = await ident.login("ada@example.com")
    second = await ident.stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token))
    assert second.refresh_token != first.refresh_token
    # The spent token comes back (a thief replaying it): the whole family dies.
    await refused(
        ident.stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await refused(
        ident.stub.Refresh(pb.RefreshRequest(refresh_token=second.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    # Another login (another family) is untouched.
    other = await ident.login("ada@example.com")
    await ident.stub.Refresh(pb.RefreshRequest(refresh_token=other.refresh_token))


async def test_logout_revokes_and_unknown_or_expired_tokens_are_refused(ident: Identity) -> None:
    await ident.register("ada@example.com")
    tokens = await ident.login("ada@example.com")
    await ident.stub.Logout(pb.LogoutRequest(refresh_token=tokens.refresh_token))
    await refused(
        ident.stub.Refresh(pb.RefreshRequest(refresh_token=tokens.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    for token in ("", "made-up"):
        await refused(
            ident.stub.Refresh(pb.RefreshRequest(refresh_token=token)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    stale = await ident.login("ada@example.com")
    ctx = ident.system.hosts["identity"].ctx
    assert ctx is not None
    async with ctx.db.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await conn.execute(update(refresh_tokens).values(expires_at=past))
    error = await refused(
        ident.stub.Refresh(pb.RefreshRequest(refresh_token=stale.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert "expired" in error.details()


async def test_a_customer_sees_and_changes_only_their_own_profile(ident: Identity) -> None:
    ada = await ident.register("ada@example.com")
    bob = await ident.register("bob@example.com", name="Bob")
    token = (await ident.login("ada@example.com")).access_token
    me = await ident.stub.GetUser(pb.GetUserRequest(), metadata=bearer(token))
    assert (me.user_id, me.email, list(me.roles)) == (ada, "ada@example.com", ["customer"])
    await refused(
        ident.stub.GetUser(pb.GetUserRequest(user_id=bob), metadata=bearer(token)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await refused(
        ident.stub.UpdateProfile(
            pb.UpdateProfileRequest(user_id=bob, name="Mallory"), metadata=bearer(token)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    changed = await ident.stub.UpdateProfile(
        pb.UpdateProfileRequest(name="Ada L."), metadata=bearer(token)
    )
    assert changed.name == "Ada L." and changed.email == "ada@example.com"
    assert (await ident.events("ProfileUpdated"))[-1].data == {"userId": ada, "name": "Ada L."}
    await refused(
        ident.stub.UpdateProfile(
            pb.UpdateProfileRequest(email="bob@example.com"), metadata=bearer(token)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )


async def test_calls_without_a_good_token_are_unauthenticated(ident: Identity) -> None:
    for metadata in ([], bearer("junk"), [("authorization", "Basic eDp5")]):
        await refused(
            ident.stub.GetUser(pb.GetUserRequest(), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )


async def test_only_an_admin_sets_roles_and_the_last_admin_stays(ident: Identity) -> None:
    ada = await ident.register("ada@example.com")
    customer = (await ident.login("ada@example.com")).access_token
    await refused(
        ident.stub.SetRoles(
            pb.SetRolesRequest(user_id=ada, roles=["admin"]), metadata=bearer(customer)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    admin_token = (await ident.login(ADMIN_EMAIL, ADMIN_PASSWORD)).access_token
    admin = bearer(admin_token)
    user = await ident.stub.SetRoles(
        pb.SetRolesRequest(user_id=ada, roles=["admin", "customer"]), metadata=admin
    )
    assert list(user.roles) == ["admin", "customer"]
    assert (await ident.events("UserRolesUpdated"))[-1].data == {
        "userId": ada,
        "roles": ["admin", "customer"],
    }
    # New tokens carry the new roles.
    verified = await ident.stub.VerifyToken(
        pb.VerifyTokenRequest(token=(await ident.login("ada@example.com")).access_token)
    )
    assert list(verified.roles) == ["admin", "customer"]
    await refused(
        ident.stub.SetRoles(pb.SetRolesRequest(user_id=ada, roles=["root"]), metadata=admin),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    await refused(
        ident.stub.SetRoles(pb.SetRolesRequest(user_id="nobody", roles=["admin"]), metadata=admin),
        grpc.StatusCode.NOT_FOUND,
    )
    # Two admins: one may step down; then the other is the last and may not.
    me = (await ident.stub.GetUser(pb.GetUserRequest(), metadata=admin)).user_id
    await ident.stub.SetRoles(pb.SetRolesRequest(user_id=me, roles=["customer"]), metadata=admin)
    await refused(
        ident.stub.SetRoles(pb.SetRolesRequest(user_id=ada, roles=["customer"]), metadata=admin),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


async def test_verify_token_refuses_what_does_not_verify(ident: Identity) -> None:
    await refused(
        ident.stub.VerifyToken(pb.VerifyTokenRequest(token="a.b.c")),
        grpc.StatusCode.UNAUTHENTICATED,
    )


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short1!", "8 to 128 characters"),
        ("lettersonly", "at least two of"),
        ("Password1", "first any guesser tries"),
        ("xada.lovelace-7", "email's name"),
    ],
)
def test_a_refused_password_says_which_rule_it_breaks(password: str, rule: str) -> None:
    with pytest.raises(Invalid, match=rule):
        check_password(password, "ada.lovelace@example.com")
