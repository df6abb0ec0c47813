"""The gateway's routers, in the order they are included. Each area adds its own line."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.services.gateway.routes import (
    audit,
    auth,
    cart,
    compat_oms,
    compat_orders,
    compat_wdm,
    compat_wdm_orders,
    inventory,
    notifications,
    operations,
    orders,
    payments,
    products,
    recommendations,
    shipments,
    users,
    webhooks,
)

# The order of the OpenAPI document (and /docs).
ROUTERS: list[APIRouter] = [
    auth.router,
    auth.jwks_router,
    users.router,
    products.router,
    cart.router,
    # The seed routes first: /api/v1/orders/list must not be taken for an order id.
    *(compat_orders.router, compat_oms.router, orders.router, shipments.router),
    inventory.router,
    operations.router,
    notifications.router,
    compat_wdm_orders.router,
    compat_wdm.router,
    audit.router,
    payments.router,
    payments.wallets,
    recommendations.router,
    webhooks.router,
]

# The WDM benchmark's API: served, and in the OpenAPI document, only with MERCATO_WDM_API=1.
WDM: list[APIRouter] = [compat_wdm_orders.router, compat_wdm.router]

# Tried first on every request, in this order (a request tries the routes one after another
# until one matches): what shoppers call most. Keeps the seed routes ahead of orders' too.
HOT: list[APIRouter] = [products.router, cart.router, compat_orders.router, orders.router]

# Writes served by ``lean.LeanRoutes`` (every plain GET is): what each checkout calls.
LEAN_WRITES = (cart.add_item, cart.checkout)
