"""The signed-in user's profile; roles, set by an admin."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from mercato.api.identity.v1 import identity_pb2 as pb
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.services.gateway.inputs import Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.ratelimit import enforce, limit_per_email
from mercato.services.gateway.security import AdminCaller, CurrentCaller
from mercato.services.gateway.upstream import Upstream

router = APIRouter(prefix="/api/v1/users", tags=["users"], responses=PROBLEM_RESPONSES)

Role = Literal["customer", "admin"]
UserId = Annotated[str, Path(min_length=1, max_length=200)]


class User(BaseModel):
    userId: str
    email: str
    name: str
    roles: list[str]
    createdAt: str


class ProfileChange(Input):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    email: Annotated[str, Field(min_length=3, max_length=254)] | None = None


class Roles(Input):
    roles: Annotated[list[Role], Field(min_length=1, max_length=2)]


def _user(reply: pb.User) -> User:
    return User(
        userId=reply.user_id,
        email=reply.email,
        name=reply.name,
        roles=list(reply.roles),
        createdAt=reply.created_at,
    )


@router.get("/me", summary="The signed-in user")
async def me(caller: CurrentCaller, upstream: Upstream) -> User:
    reply = await upstream.call("identity", IdentityStub, "GetUser", pb.GetUserRequest())
    return _user(reply)


@router.patch("/me", summary="Change the signed-in user's name or email")
async def update_me(body: ProfileChange, caller: CurrentCaller, upstream: Upstream) -> User:
    if body.email is not None:  # a 409 says the email is someone's: as limited as registering
        enforce(
            upstream.request, "email-change", caller.user_id, "too many email changes; retry later"
        )
        limit_per_email(upstream.request, "register-email", body.email)
    message = pb.UpdateProfileRequest(name=body.name, email=body.email)
    return _user(await upstream.call("identity", IdentityStub, "UpdateProfile", message))


@router.get("/{userId}", summary="Any user (admin)")
async def get_user(userId: UserId, caller: AdminCaller, upstream: Upstream) -> User:
    message = pb.GetUserRequest(user_id=userId)
    return _user(await upstream.call("identity", IdentityStub, "GetUser", message))


@router.put("/{userId}/roles", summary="Set a user's roles (admin)")
async def set_roles(userId: UserId, body: Roles, caller: AdminCaller, upstream: Upstream) -> User:
    message = pb.SetRolesRequest(user_id=userId, roles=sorted(set(body.roles)))
    return _user(await upstream.call("identity", IdentityStub, "SetRoles", message))
