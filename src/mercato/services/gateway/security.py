"""Who is calling: the bearer token verified locally against identity's JWKS.

In a route::

    from mercato.services.gateway.security import AdminCaller, CurrentCaller

    @router.get("/me")
    async def me(caller: CurrentCaller) -> ...:       # 401 without a valid token
        ...
    @router.put("/{userId}/roles")
    async def set_roles(caller: AdminCaller) -> ...:  # and 403 without the admin role
        ...

``caller.user_id`` is the signed-in user; check ``caller.may_act_for(owner)`` before showing
or changing someone's data (a customer acts only for themself, an admin for anyone). The
services check again: the gateway forwards the token with every call.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from fastapi.security.base import SecurityBase

from mercato.platform.auth import (
    AuthError,
    Caller,
    ExpiredToken,
    KeysUnavailable,
    verifier_for,
)
from mercato.services.gateway.problems import Problem
from mercato.services.gateway.upstream import context_of


class _BearerCaller(SecurityBase):
    """The verified caller: the dependency that is also OpenAPI's security scheme (FastAPI
    documents any ``SecurityBase`` a route depends on), so that a signed-in route solves one
    dependency per request for it, not ``current_caller`` and the ``HTTPBearer`` under it."""

    def __init__(self, bearer: HTTPBearer):
        self._bearer = bearer
        self.model = bearer.model
        self.scheme_name = bearer.scheme_name

    async def __call__(self, request: Request) -> Caller:
        credentials = await self._bearer(request)
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Problem(401, "sign in: no bearer token", headers={"WWW-Authenticate": "Bearer"})
        try:
            return await verifier_for(context_of(request)).verify(credentials.credentials)
        except AuthError as exc:
            reason = "the token has expired" if isinstance(exc, ExpiredToken) else "invalid token"
            challenge = f'Bearer error="invalid_token", error_description="{reason}"'
            raise Problem(401, reason, headers={"WWW-Authenticate": challenge}) from None
        except KeysUnavailable:
            raise Problem(503, "cannot verify tokens right now; retry later") from None


current_caller = _BearerCaller(
    HTTPBearer(auto_error=False, description="An access token from /api/v1/auth/login")
)


async def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise Problem(403, "the admin role is required")
    return caller


CurrentCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
