"""``mercato bench --webhook-subscriber``: one webhook subscription to every event type, its
endpoint the bare uvicorn endpoint (``hello``) in a process of its own, so the run measures
what delivering every event to an outside system costs the shop. Deliveries are asynchronous:
those still pending when the load ends are waited for (``drained``, polled once the orders
have settled: the time reported is an upper bound), and the webhooks process's CPU until then
is reported, so that a delivery worker falling behind cannot pass for a cheap one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mercato.bench.client import Client
from mercato.bench.raw import hello_server
from mercato.bench.shoppers import Headers, expect, post_retrying


@asynccontextmanager
async def subscriber(http: Client, admin: Headers) -> AsyncIterator[str]:
    """A receiver, and a subscription of every event type to it; the subscription's id."""
    async with hello_server() as base:
        body = {"url": f"{base}/hooks", "eventTypes": ["*"], "description": "mercato bench"}
        made = await post_retrying(http, "/api/v1/admin/webhooks", body, admin)
        yield str(expect(made, 201)["id"])


async def drained(http: Client, admin: Headers, subscription: str, timeout: float) -> bool:
    """Whether the subscription came to have no pending delivery within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    url = f"/api/v1/admin/webhooks/{subscription}/deliveries"
    query: dict[str, str | int | float] = {"status": "pending", "limit": 1}
    while time.monotonic() < deadline:
        if not expect(await http.get(url, params=query, headers=admin), 200)["items"]:
            return True
        await asyncio.sleep(0.25)
    return False
