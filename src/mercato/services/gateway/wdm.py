"""Shared ground of the "web-scale data management" (WDM) compatibility API.

That family of course projects shares one HTTP API and one benchmark (a consistency test and a
Locust stress test). Mercato serves it too (``routes/compat_wdm*.py``), so the same load can be
pointed at them and at us. Its clients send no credentials, so the API is off unless
``MERCATO_WDM_API=1``; when on, the gateway acts for its callers with the admin account of
``MERCATO_ADMIN_EMAIL``/``MERCATO_ADMIN_PASSWORD`` (a clear error at the first call if unset).

- ``wdm_id(kind, raw)``: the ids are ordinary Mercato ids. The bulk set-up routes
  (``batch_init``) number their entities 0…n-1 and the stress test picks ids at random in that
  range, so a decimal number in a path stands for a fixed uuid derived from (kind, number);
  anything else is taken as a Mercato id as it is.
- ``WdmUpstream``: the per-request handle on the services (``Upstream``'s calls), carrying the
  admin's bearer token instead of the caller's headers.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Annotated, Literal

from fastapi import Depends, Request

from mercato.api.identity.v1 import identity_pb2, identity_pb2_grpc
from mercato.services.gateway.problems import Problem
from mercato.services.gateway.upstream import Gateway

Kind = Literal["user", "item", "order"]
NAMESPACE = uuid.UUID("6d3c1a52-4f0e-4f43-9a59-8a1f2f5f3e11")
_NUMBER = re.compile(r"^[0-9]{1,18}$")
_TOKEN_KEY = "wdm:admin-token"


def wdm_id(kind: Kind, raw: str) -> str:
    """The Mercato id a WDM path id stands for."""
    if _NUMBER.fullmatch(raw):
        return str(uuid.uuid5(NAMESPACE, f"{kind}/{int(raw)}"))
    return raw


class WdmUpstream(Gateway):
    """Calls the services as the configured admin (the WDM API has no credentials)."""

    def __init__(self, request: Request):
        super().__init__(request)
        self._token = ""
        if not self.ctx.settings.wdm_api:
            raise Problem(404, f"no route {request.method} {request.url.path}")

    async def signed_in(self) -> WdmUpstream:
        self._token = await self._admin_token()
        return self

    def metadata(self) -> list[tuple[str, str]]:
        pairs = [("authorization", f"Bearer {self._token}")] if self._token else []
        request_id = getattr(self.request.state, "request_id", None)
        if request_id:
            pairs.append(("x-request-id", request_id))
        return pairs

    async def _admin_token(self) -> str:
        extras = self.ctx.extras
        lock = extras.setdefault(_TOKEN_KEY + ":lock", asyncio.Lock())
        async with lock:
            cached = extras.get(_TOKEN_KEY)
            if cached is not None and cached[1] > time.monotonic():
                return str(cached[0])
            settings = self.ctx.settings
            if not settings.admin_email or not settings.admin_password:
                raise Problem(
                    503,
                    "the WDM API needs MERCATO_ADMIN_EMAIL and MERCATO_ADMIN_PASSWORD to act for "
                    "its callers",
                )
            reply = await self.call(
                "identity",
                identity_pb2_grpc.IdentityStub,
                "Login",
                identity_pb2.LoginRequest(
                    email=settings.admin_email, password=settings.admin_password
                ),
            )
            # Renewed well before it expires, so a call never carries a stale token.
            lifetime = max(float(reply.expires_in) * 0.8, 1.0)
            extras[_TOKEN_KEY] = (reply.access_token, time.monotonic() + lifetime)
            return str(reply.access_token)


async def _wdm_upstream(request: Request) -> WdmUpstream:
    return await WdmUpstream(request).signed_in()


Wdm = Annotated[WdmUpstream, Depends(_wdm_upstream)]
