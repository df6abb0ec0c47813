"""identity: users and their roles, sign-in, and the tokens the other services verify."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import grpc.aio

from mercato.api.identity.v1 import identity_pb2, identity_pb2_grpc
from mercato.platform.auth import JwksCache, TokenVerifier, install_verifier
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.platform.signing import static_jwks
from mercato.services.identity.admin import ensure_admin
from mercato.services.identity.grpc_api import ISSUER, IdentityApi
from mercato.services.identity.keys import load_signing_key
from mercato.services.identity.tokens import TokenIssuer


async def start(ctx: ServiceContext) -> None:
    settings = ctx.settings
    key = load_signing_key(settings)
    ctx.extras[ISSUER] = TokenIssuer(
        key,
        access_ttl=timedelta(seconds=settings.access_token_ttl),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl),
    )
    # identity verifies tokens with the key in hand, not by asking itself over gRPC.
    install_verifier(ctx, TokenVerifier(JwksCache(static_jwks(key))))
    await ensure_admin(ctx)


def register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    identity_pb2_grpc.add_IdentityServicer_to_server(IdentityApi(ctx), server)  # type: ignore[no-untyped-call]
    return [identity_pb2.DESCRIPTOR.services_by_name["Identity"].full_name]


service = Service(
    name="identity",
    migrations=Path(__file__).parent / "migrations",
    grpc=register,
    on_start=start,
)
