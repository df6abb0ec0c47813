"""The pages of products the gateway keeps, and when one may be sent again without the catalog.

A page (``GET /api/v1/products`` for one query) is kept with the catalog's version it was read
at (``ListProductsReply.version``; triggers move it with every change to a product). It is
sent again as kept:

- when the catalog, asked with ``if_version``, answers ``unchanged``: exact, the catalog
  decides;
- without asking, when the version the catalog pushes (``WatchVersion``, read every
  ``MERCATO_CATALOG_WATCH_INTERVAL`` seconds, at least one message a second) is the page's.
  A change made elsewhere (another gateway, a stock report) is seen once the catalog has read
  its version and the push has arrived: the interval and a message's way, not more, for the
  watch counts as lost after ``SILENCE`` seconds without one.
  A catalog write through this gateway is seen at once: after it, pages are asked for again
  until one read after it shows the version to wait for (``fence``), so that a push read
  before the write cannot pass for the latest.

The same in one process as across processes (the watch then runs on the in-process channel).
An admin's view with the inactive products is never kept.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import grpc
import grpc.aio
import structlog

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.platform.runtime.service import ServiceContext

log = structlog.get_logger(__name__)

# The catalog's methods that change nothing; any other call to it counts as a write.
READS = frozenset({"ListProducts", "GetProduct", "ValidateItems", "WatchVersion"})
SILENCE = 3.0  # seconds without a message after which the watch counts as lost
_KEY = "mercato.gateway.product_pages"  # in ctx.extras
_NEVER = 2**64


class Pages:
    SIZE = 256

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[object, ...], tuple[int, bytes]] = OrderedDict()
        # The version last pushed; None while there is no watch (none yet, or it ended, or
        # it fell silent: ``watch_catalog`` gives up on it after ``SILENCE`` seconds).
        self.latest: int | None = None
        self.writes = 0  # catalog writes through this gateway that have returned
        self.fence = 0  # kept pages go unasked only at this version or later

    def get(self, key: tuple[object, ...]) -> tuple[int, bytes] | None:
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
        return found

    def put(self, key: tuple[object, ...], version: int, body: bytes) -> None:
        self._kept[key] = (version, body)
        self._kept.move_to_end(key)
        while len(self._kept) > self.SIZE:
            self._kept.popitem(last=False)

    def sendable(self, version: int) -> bool:
        """Whether a page kept at ``version`` may be sent without asking the catalog."""
        return version == self.latest and version >= self.fence

    def pushed(self, version: int) -> None:
        self.latest = version

    def lost(self) -> None:
        self.latest = None

    def written(self) -> None:
        """A catalog write through this gateway has returned (or failed: it may have been
        done): no page goes unasked until a read begun after it sets the fence."""
        self.writes += 1
        self.fence = _NEVER

    def read(self, version: int, writes_before: int) -> None:
        """The catalog answered at ``version`` a request begun when ``writes_before`` writes
        had returned: if none has since, every write this gateway knows of is in it."""
        if writes_before == self.writes:
            self.fence = min(self.fence, version)


def pages_of(ctx: ServiceContext) -> Pages:
    pages = ctx.extras.get(_KEY)
    if pages is None:
        pages = ctx.extras[_KEY] = Pages()
    assert isinstance(pages, Pages)
    return pages


async def watch_catalog(ctx: ServiceContext) -> None:
    """The gateway's task: follow the catalog's version, connecting again (0.5 s, doubling
    to 5 s) whenever the watch ends."""
    if ctx.settings.catalog_watch_interval <= 0:
        return
    pages = pages_of(ctx)
    delay = 0.5
    while True:
        try:
            channel = ctx.own_channel("catalog")  # not the requests' (see own_channel)
        except LookupError:
            channel = None
        if channel is not None:
            call = CatalogStub(channel).WatchVersion(pb.WatchVersionRequest())  # type: ignore[no-untyped-call]
            try:
                while True:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the task's
                    # own cancellation when a reply comes at that moment (the task then never
                    # ends, and neither does the gateway's stop).
                    async with asyncio.timeout(SILENCE):
                        reply = await call.read()
                    if reply is grpc.aio.EOF:
                        break
                    pages.pushed(reply.version)
                    delay = 0.5
            except (grpc.aio.AioRpcError, TimeoutError) as exc:
                log.debug("catalog version watch ended", reason=type(exc).__name__)
            except Exception:  # never the end of the task: pages are asked for meanwhile
                log.exception("catalog version watch failed")
            finally:
                pages.lost()
                call.cancel()
                if isinstance(channel, grpc.aio.Channel):
                    await channel.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
