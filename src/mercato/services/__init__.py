"""Mercato's services. Each is a package exposing a ``service`` (a platform ``Service``).

The runtime finds them by name here; ``mercato serve`` also takes ``module:attribute`` for a
service defined elsewhere (tests use that).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

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
    "webhooks",
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
    "audit": "mercato.services.audit.service:service",
    "notification": "mercato.services.notification.service:service",
    "recommendation": "mercato.services.recommendation.service:service",
    "webhooks": "mercato.services.webhooks.service:service",
    "gateway": "mercato.services.gateway.service:service",
}

# The services the order saga does without: `mercato up --without NAME` leaves them out.
OPTIONAL = ("notification", "audit", "recommendation", "webhooks")


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


def consumes_events(names: Sequence[str]) -> bool:
    """Whether a process running these services consumes events. Such processes start first
    (``mercato up --processes``): an event published before its consumer's queue exists never
    reaches it."""
    return any(load_service(name).handlers for name in names)


class BadTopology(ValueError):
    pass


def ordered_names(without: Sequence[str] = ()) -> list[str]:
    """The services in start order, less ``without`` (optional services only)."""
    for name in without:
        if name not in SERVICES:
            raise BadTopology(f"--without {name}: unknown service {name!r}")
        if name not in OPTIONAL:
            optional = [n for n in OPTIONAL if n in SERVICES]
            can = f"only {', '.join(optional)} can be left out" if optional else "none can"
            raise BadTopology(f"--without {name}: the order saga needs {name}; {can}")
    return sorted(
        (n for n in SERVICES if n not in without),
        key=lambda n: START_ORDER.index(n) if n in START_ORDER else 99,
    )


def all_services(without: Sequence[str] = ()) -> list[Service]:
    return [load_service(name) for name in ordered_names(without)]


def _missing(name: str) -> str:
    return f"unknown service {name!r}" if name not in SERVICES else f"{name} is left out"


def process_plan(
    groups: Sequence[str] = (),
    replicas: Mapping[str, int] | None = None,
    without: Sequence[str] = (),
) -> list[tuple[str, ...]]:
    """The processes of ``mercato up --processes``, in start order: each the services it runs.

    ``groups`` are comma-separated services that share one process (``"gateway,catalog"``);
    every other service runs alone, in ``replicas[name]`` competing processes (default 1). A
    service of a group has one process: the group's."""
    replicas = dict(replicas or {})
    known = ordered_names(without)
    for name in replicas:
        if name not in known:
            raise BadTopology(f"--replicas {name}: {_missing(name)}")
    together: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for group in groups:
        names = [n.strip() for n in group.split(",") if n.strip()]
        if not names:
            raise BadTopology(f"--group {group!r}: no service named")
        for name in names:
            if name not in known:
                raise BadTopology(f"--group {group!r}: {_missing(name)}")
            if name in seen:
                raise BadTopology(f"--group {group!r}: {name} is already in a group")
            if name in replicas:
                raise BadTopology(f"--replicas {name}: {name} runs in a group, as one process")
            seen.add(name)
        together.append(tuple(sorted(names, key=known.index)))
    plan: list[tuple[str, ...]] = [
        (name,) for name in known if name not in seen for _ in range(replicas.get(name, 1))
    ]
    plan += together
    return sorted(plan, key=lambda names: known.index(names[0]))
