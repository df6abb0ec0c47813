"""Mercato's services. Each is a package exposing a ``service`` (a platform ``Service``).

The runtime finds them by name here; ``mercato serve`` also takes ``module:attribute`` for a
service defined elsewhere (tests use that).
"""

from __future__ import annotations

import importlib

from mercato.platform.runtime.service import Service

# The order services start in (those that others call over gRPC first).
START_ORDER = (
    "identity",
    "catalog",
    "inventory",
    "cart",
    "order",
    "payment",
    "shipping",
    "notification",
    "audit",
    "recommendation",
    "gateway",
)
# name -> "module:attribute"; a service is listed here once it exists.
SERVICES: dict[str, str] = {
    "identity": "mercato.services.identity.service:service",
    "catalog": "mercato.services.catalog.service:service",
    "inventory": "mercato.services.inventory.service:service",
    "cart": "mercato.services.cart.service:service",
    "payment": "mercato.services.payment.service:service",
    "order": "mercato.services.order.service:service",
    "shipping": "mercato.services.shipping.service:service",
    "gateway": "mercato.services.gateway.service:service",
}


class UnknownService(LookupError):
    pass


def load_service(spec: str) -> Service:
    target = SERVICES.get(spec, spec if ":" in spec else None)
    if target is None:
        known = ", ".join(SERVICES) or "none yet"
        raise UnknownService(f"unknown service {spec!r}; known services: {known}")
    module_name, _, attr = target.partition(":")
    try:
        service = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownService(f"cannot load service {spec!r}: {exc}") from exc
    if not isinstance(service, Service):
        raise UnknownService(f"{spec!r} is not a mercato Service")
    return service


def ordered_names() -> list[str]:
    return sorted(SERVICES, key=lambda n: START_ORDER.index(n) if n in START_ORDER else 99)


def all_services() -> list[Service]:
    return [load_service(name) for name in ordered_names()]
