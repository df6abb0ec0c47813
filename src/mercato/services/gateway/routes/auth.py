"""Sign-up, sign-in, token refresh and sign-out; the public keys as a JWKS."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from mercato.api.identity.v1 import identity_pb2 as pb
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.platform.auth import CLIENT_ADDRESS
from mercato.services.gateway.inputs import Input
from mercato.services.gateway.problems import PROBLEM_RESPONSES
from mercato.services.gateway.ratelimit import client_address, limit_per_email, limited
from mercato.services.gateway.upstream import IdempotencyKey, Upstream

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=PROBLEM_RESPONSES)
jwks_router = APIRouter(tags=["auth"], responses=PROBLEM_RESPONSES)

Email = Annotated[str, Field(min_length=3, max_length=254, examples=["ada@example.com"])]
Password = Annotated[str, Field(min_length=1, max_length=128)]
Token = Annotated[str, Field(min_length=1, max_length=4096)]


class Registration(Input):
    email: Email
    password: Password
    name: Annotated[str, Field(min_length=1, max_length=200)]


class Registered(BaseModel):
    userId: str


class Credentials(Input):
    email: Email
    password: Password


class RefreshToken(Input):
    refreshToken: Token


class Tokens(BaseModel):
    accessToken: str
    refreshToken: str
    tokenType: str = "Bearer"
    expiresIn: int = Field(description="seconds until the access token expires")


def _tokens(reply: pb.TokenReply, response: Response) -> Tokens:
    # RFC 6749 §5.1: no cache, shared or the browser's, keeps a token.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return Tokens(
        accessToken=reply.access_token,
        refreshToken=reply.refresh_token,
        tokenType=reply.token_type,
        expiresIn=reply.expires_in,
    )


@router.post(
    "/register",
    status_code=201,
    dependencies=[Depends(limited("register"))],
    summary="Create a customer account",
)
async def register(
    body: Registration, upstream: Upstream, idempotency_key: IdempotencyKey = None
) -> Registered:
    limit_per_email(upstream.request, "register-email", body.email)
    message = pb.RegisterRequest(email=body.email, password=body.password, name=body.name)
    reply = await upstream.call("identity", IdentityStub, "Register", message)
    return Registered(userId=reply.user_id)


@router.post("/login", dependencies=[Depends(limited("login"))], summary="Sign in")
async def login(body: Credentials, upstream: Upstream, response: Response) -> Tokens:
    message = pb.LoginRequest(email=body.email, password=body.password)
    # Identity throttles failed logins per (address, account): an attacker's guesses slow the
    # attacker, not the owner signing in from elsewhere.
    address = [(CLIENT_ADDRESS, client_address(upstream.request))]
    reply = await upstream.call("identity", IdentityStub, "Login", message, metadata=address)
    return _tokens(reply, response)


@router.post(
    "/refresh",
    dependencies=[Depends(limited("refresh"))],
    summary="Trade a refresh token for new tokens (the old one is spent)",
)
async def refresh(body: RefreshToken, upstream: Upstream, response: Response) -> Tokens:
    message = pb.RefreshRequest(refresh_token=body.refreshToken)
    return _tokens(await upstream.call("identity", IdentityStub, "Refresh", message), response)


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    summary="Revoke a refresh token and every token rotated from the same sign-in",
)
async def logout(body: RefreshToken, upstream: Upstream) -> Response:
    message = pb.LogoutRequest(refresh_token=body.refreshToken)
    await upstream.call("identity", IdentityStub, "Logout", message)
    return Response(status_code=204)


@jwks_router.get(
    "/.well-known/jwks.json", summary="The public keys that verify access tokens (RFC 7517)"
)
async def jwks(upstream: Upstream, response: Response) -> dict[str, Any]:
    reply = await upstream.call("identity", IdentityStub, "GetJwks", pb.GetJwksRequest())
    response.headers["Cache-Control"] = "public, max-age=300"
    document = json.loads(reply.jwks_json)
    assert isinstance(document, dict)
    return document
