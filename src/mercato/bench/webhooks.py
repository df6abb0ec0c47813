"""``mercato bench --webhook-subscriber``: one webhook subscription to every event type, its
endpoint the bare uvicorn endpoint (``hello``) in a process of its own, so the run measures
what delivering every event to an outside system costs the shop."""

from __future__ import annotations

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
