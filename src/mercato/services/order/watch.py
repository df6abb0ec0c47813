"""Watching an order's status without polling from the client: the wait and stream calls.

A watcher reads the order, yields it when its ``version`` changed, and sleeps until a nudge or
``POLL`` seconds. Whatever places or changes an order in this process nudges its watchers once
it has committed, so one read after a nudge sees it. The poll is the fallback for changes made
by another replica of the service.

An order not there yet (a checkout's order is made from its event, a moment after the cart
answered) is waited for in the same way, for as long as the caller allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator

from mercato.services.order.store import Stored

POLL = 1.0  # seconds between reads when nothing nudges

_waiters: dict[str, set[asyncio.Future[None]]] = {}


def nudge(order_id: str) -> None:
    """Wake whoever watches this order (it was placed or changed, and that has committed)."""
    for waiter in _waiters.pop(order_id, ()):
        if not waiter.done():
            waiter.get_loop().call_soon_threadsafe(_wake, waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@contextlib.contextmanager
def _listening(order_id: str) -> Iterator[asyncio.Future[None]]:
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    _waiters.setdefault(order_id, set()).add(waiter)
    try:
        yield waiter
    finally:
        waiting = _waiters.get(order_id)
        if waiting is not None:
            waiting.discard(waiter)
            if not waiting:
                with contextlib.suppress(KeyError):
                    del _waiters[order_id]


async def watch(
    order_id: str,
    read: Callable[[], Awaitable[Stored | None]],
    *,
    visible: Callable[[Stored], bool] = lambda _: True,
    appear: float = 0.0,
) -> AsyncGenerator[Stored, None]:
    """The order now, then again each time it changes; ends when it is final.

    An order that is not there is waited for up to ``appear`` seconds; one the caller may not
    see (``visible``) is not waited for. Either way the watch then ends without yielding: the
    caller answers both alike, so a watch tells nothing about someone else's orders.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + appear
    seen = -1
    while True:
        # Listen before reading, so a change that commits in between still wakes us.
        with _listening(order_id) as nudged:
            stored = await read()
            if stored is None:
                if seen >= 0 or loop.time() >= give_up:
                    return
                pause = min(POLL, give_up - loop.time())
            elif not visible(stored):
                return
            else:
                if stored.version != seen:
                    seen = stored.version
                    yield stored
                    if stored.order.is_final:
                        return
                pause = POLL
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(nudged, pause)
