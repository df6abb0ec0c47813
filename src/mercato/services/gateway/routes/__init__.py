"""The gateway's routers, in the order they are included. Each area adds its own line."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.services.gateway.routes import auth, cart, products, users

ROUTERS: list[APIRouter] = [
    auth.router,
    auth.jwks_router,
    users.router,
    products.router,
    cart.router,
]
