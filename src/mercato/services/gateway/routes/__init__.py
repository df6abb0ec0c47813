"""The gateway's routers, in the order they are included. Each area adds its own line."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.services.gateway.routes import (
    auth,
    cart,
    compat_oms,
    compat_orders,
    compat_wdm,
    compat_wdm_orders,
    orders,
    products,
    shipments,
    users,
)

ROUTERS: list[APIRouter] = [
    auth.router,
    auth.jwks_router,
    users.router,
    products.router,
    cart.router,
    # The seed routes first: /api/v1/orders/list must not be taken for an order id.
    *(compat_orders.router, compat_oms.router, orders.router, shipments.router),
    compat_wdm_orders.router,
    compat_wdm.router,
]
