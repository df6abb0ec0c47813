"""identity's gRPC API. Refusals that wrote something (failure counts, revocations) commit
first and are reported after, so every abort below happens outside a transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeAlias

import grpc
import grpc.aio
import jwt
from sqlalchemy.exc import IntegrityError

from mercato.api.identity.v1 import identity_pb2 as pb
from mercato.api.identity.v1 import identity_pb2_grpc
from mercato.platform.auth import (
    CLIENT_ADDRESS,
    AuthError,
    metadata_value,
    require_caller,
    verifier_for,
)
from mercato.platform.idempotency import grpc_run_once
from mercato.platform.runtime.service import ServiceContext
from mercato.platform.signing import jwks_of
from mercato.platform.times import rfc3339
from mercato.platform.unit_of_work import UnitOfWork
from mercato.services.identity import accounts
from mercato.services.identity.accounts import Account, EmailTaken, LastAdmin, UserNotFound
from mercato.services.identity.domain import (
    Invalid,
    Throttle,
    check_name,
    check_password,
    check_user_id,
    normalize_email,
    throttle_key,
)
from mercato.services.identity.passwords import hash_password, needs_rehash, verify_password
from mercato.services.identity.tokens import Issued, Refused, TokenIssuer

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]
ISSUER = "identity.issuer"
MAX_CREATE = 1000


async def abort(context: Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("abort returned")  # pragma: no cover


def user_reply(account: Account) -> pb.User:
    return pb.User(
        user_id=account.user_id,
        email=account.email,
        name=account.name,
        roles=account.roles,
        created_at=rfc3339(account.created_at),
    )


class IdentityApi(identity_pb2_grpc.IdentityServicer):
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx
        self.issuer: TokenIssuer = ctx.extras[ISSUER]
        s = ctx.settings
        self.throttle = Throttle(
            s.login_max_failures,
            timedelta(seconds=s.login_delay),
            timedelta(seconds=s.login_lockout),
        )

    async def Register(self, request: pb.RegisterRequest, context: Context) -> pb.RegisterReply:
        try:
            email = normalize_email(request.email)
            name = check_name(request.name)
            check_password(request.password, email)
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        password_hash = await hash_password(request.password)

        async def work(uow: UnitOfWork) -> pb.RegisterReply:
            user_id = await accounts.register(uow, email, name, password_hash, ["customer"])
            return pb.RegisterReply(user_id=user_id)

        try:
            # The fingerprint leaves the password out: a fast hash of it, stored, would be a
            # shortcut around argon2 for whoever reads the database.
            return await grpc_run_once(
                self.ctx,
                context,
                scope="identity.Register",
                request=pb.RegisterRequest(email=email, name=name),
                work=work,
                decode=pb.RegisterReply.FromString,
            )
        except (EmailTaken, IntegrityError):
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, "that email is already registered")

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.TokenReply:
        try:
            email = normalize_email(request.email)
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        now = datetime.now(UTC)
        key = throttle_key(email, metadata_value(context, CLIENT_ADDRESS) or "")
        async with self.ctx.db.connect() as conn:
            user = await accounts.user_by_email(conn, email)
            locked = await accounts.seconds_locked(conn, key, now)
        outcome: Issued | Refused
        if locked:
            async with self.ctx.transaction() as uow:
                outcome = await accounts.refuse_login(
                    uow, email, key, "throttled", self.throttle, now
                )
        else:
            ok = await verify_password(user.password_hash if user else None, request.password)
            new_hash = None
            if ok and needs_rehash(user.password_hash):
                new_hash = await hash_password(request.password)
            async with self.ctx.transaction() as uow:
                if ok:
                    outcome = await accounts.accept_login(
                        uow, user, key, self.issuer, now, new_hash
                    )
                else:
                    reason = "unknown_email" if user is None else "wrong_password"
                    outcome = await accounts.refuse_login(
                        uow, email, key, reason, self.throttle, now
                    )
        return await self._tokens(outcome, context)

    async def Refresh(self, request: pb.RefreshRequest, context: Context) -> pb.TokenReply:
        if not request.refresh_token:
            await abort(context, grpc.StatusCode.UNAUTHENTICATED, "no refresh token")
        async with self.ctx.transaction() as uow:
            outcome = await accounts.refresh(
                uow, request.refresh_token, self.issuer, datetime.now(UTC)
            )
        return await self._tokens(outcome, context)

    async def _tokens(self, outcome: Issued | Refused, context: Context) -> pb.TokenReply:
        if isinstance(outcome, Issued):
            return pb.TokenReply(
                access_token=outcome.access_token,
                refresh_token=outcome.refresh_token,
                token_type="Bearer",
                expires_in=outcome.expires_in,
            )
        if outcome.retry_after:
            context.set_trailing_metadata((("retry-after", str(outcome.retry_after)),))
            await abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, outcome.message)
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, outcome.message)

    async def Logout(self, request: pb.LogoutRequest, context: Context) -> pb.LogoutReply:
        if request.refresh_token:
            async with self.ctx.transaction() as uow:
                await accounts.logout(uow, request.refresh_token, datetime.now(UTC))
        return pb.LogoutReply()

    async def VerifyToken(
        self, request: pb.VerifyTokenRequest, context: Context
    ) -> pb.VerifyTokenReply:
        try:
            caller = await verifier_for(self.ctx).verify(request.token)
        except AuthError as exc:
            await abort(context, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        expires = jwt.decode(request.token, options={"verify_signature": False})["exp"]
        return pb.VerifyTokenReply(
            user_id=caller.user_id, roles=sorted(caller.roles), expires_at=int(expires)
        )

    async def GetUser(self, request: pb.GetUserRequest, context: Context) -> pb.User:
        caller = await require_caller(self.ctx, context)
        user_id = request.user_id or caller.user_id
        if not caller.may_act_for(user_id):
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, "not your account")
        try:
            async with self.ctx.db.connect() as conn:
                return user_reply(await accounts.get_account(conn, user_id))
        except UserNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such user")

    async def UpdateProfile(self, request: pb.UpdateProfileRequest, context: Context) -> pb.User:
        caller = await require_caller(self.ctx, context)
        user_id = request.user_id or caller.user_id
        if not caller.may_act_for(user_id):
            await abort(context, grpc.StatusCode.PERMISSION_DENIED, "not your account")
        try:
            name = check_name(request.name) if request.HasField("name") else None
            email = normalize_email(request.email) if request.HasField("email") else None
            async with self.ctx.transaction() as uow:
                account = await accounts.update_profile(uow, user_id, name, email)
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (EmailTaken, IntegrityError):
            await abort(context, grpc.StatusCode.ALREADY_EXISTS, "that email is already registered")
        except UserNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such user")
        return user_reply(account)

    async def SetRoles(self, request: pb.SetRolesRequest, context: Context) -> pb.User:
        await require_caller(self.ctx, context, role="admin")
        try:
            async with self.ctx.transaction() as uow:
                account = await accounts.set_roles(uow, request.user_id, list(request.roles))
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except UserNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such user")
        except LastAdmin:
            await abort(
                context, grpc.StatusCode.FAILED_PRECONDITION, "the last admin keeps the admin role"
            )
        return user_reply(account)

    async def CreateUsers(
        self, request: pb.CreateUsersRequest, context: Context
    ) -> pb.CreateUsersReply:
        await require_caller(self.ctx, context, role="admin")
        if not 1 <= len(request.users) <= MAX_CREATE:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"1 to {MAX_CREATE} users")
        new: dict[str, tuple[str, str, str]] = {}
        try:
            for user in request.users:
                user_id = check_user_id(user.user_id)
                new[user_id] = (user_id, normalize_email(user.email), check_name(user.name))
        except Invalid as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        async with self.ctx.transaction() as uow:
            created = await accounts.create_many(uow, list(new.values()))
        return pb.CreateUsersReply(created=created)

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksReply:
        return pb.GetJwksReply(jwks_json=json.dumps(jwks_of(self.issuer.key)))
