"""Where a webhook may be sent: no private, loopback or link-local address (SSRF), checked when
a subscription names its target and again on every connection.

A name is checked when the subscription is made (it must resolve, and only to public
addresses) and then by the resolver of the sender's own HTTP client: the addresses it connects
to are the ones it has just checked, so a name that resolved to a public address at creation
and to 127.0.0.1 later (DNS rebinding) is refused at delivery. An address written in the URL is
checked before each request (the client connects to it without asking any resolver).
``MERCATO_WEBHOOK_ALLOW_PRIVATE_TARGETS=1`` turns both checks off.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from mercato.platform.waits import within
from mercato.services.webhooks.domain import (
    SubscriptionError,
    forbidden_address,
    literal_address,
    target_host,
)

RESOLVE_TIMEOUT = 3.0  # seconds a subscription's host may take to resolve (within gRPC's 5)


class RefusedTarget(OSError):
    """A target that resolves to an address webhooks may not reach. The reason is its
    ``strerror``, which aiohttp's connection error shows ("… [refused: host → why]")."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, reason)


async def check_target(url: str, allow_private: bool) -> None:
    """Raise ``SubscriptionError`` for a URL that is invalid or (unless ``allow_private``)
    reaches, or may reach, a private, loopback or link-local address."""
    host = target_host(url)
    if allow_private:
        return
    literal = literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            found = await within(
                RESOLVE_TIMEOUT,
                asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM),
            )
        except TimeoutError as exc:
            raise SubscriptionError(f"the target's host {host!r} did not resolve in time") from exc
        except OSError as exc:
            raise SubscriptionError(f"the target's host {host!r} does not resolve: {exc}") from exc
        addresses = sorted({str(info[4][0]) for info in found})
    for address in addresses:
        why = forbidden_address(address)
        if why is not None:
            raise SubscriptionError(f"the target may not be reached: {host} → {why}")


def refused_literal(url: str) -> str | None:
    """Why the address written in ``url`` may not be reached (None: it may, or it is a name)."""
    literal = literal_address(target_host(url))
    return forbidden_address(literal) if literal is not None else None


class GuardedResolver(AbstractResolver):
    """Resolves as the system does, and refuses a name with any forbidden address."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            why = forbidden_address(str(entry["host"]))
            if why is not None:
                raise RefusedTarget(f"refused: {host} → {why}")
        return found

    async def close(self) -> None:
        await self._inner.close()


def resolver(allow_private: bool) -> Any:
    """The resolver for the sender's client: the system's when private targets are allowed."""
    return ThreadedResolver() if allow_private else GuardedResolver()
