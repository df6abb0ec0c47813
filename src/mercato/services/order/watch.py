"""Watching an order's status without polling from the client: the wait and stream calls.

A watcher reads the order once, yields it, and then sleeps until a nudge or ``POLL`` seconds.
Whatever places or changes an order in this process nudges its watchers once that has
committed, and hands them the order as it committed it: the watchers of one order share that
instead of each reading it again. A nudge without an order (or none within ``POLL``) makes the
watcher read; the poll is the fallback for changes made by another replica of the service.

An order not there yet (a checkout's order is made from its event, a moment after the cart
answered) is waited for in the same way, for as long as the caller allows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

from mercato.platform.waits import within
from mercato.services.order.domain import Change
from mercato.services.order.store import Stored

POLL = 1.0  # seconds between reads when nothing nudges


class _Listener:
    """One watch's ear: wakes it, keeps the newest order a nudge handed over and, while the
    nudges tell every step from the order's placing on, its history."""

    __slots__ = ("handed", "history", "loop", "unknown", "version", "woken")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.woken = asyncio.Event()
        self.handed: Stored | None = None
        self.unknown = False  # a nudge came without the order: read it
        self.history: list[Change] | None = None  # the order's history up to ``version``
        self.version = 0

    def hear(self, stored: Stored | None, changes: Sequence[Change]) -> None:
        if stored is None:
            self.unknown = True
        else:
            self._follow(stored, changes)
            if self.handed is None or stored.version > self.handed.version:
                self.handed = stored
        self.woken.set()

    def _follow(self, stored: Stored, changes: Sequence[Change]) -> None:
        if self.history is not None and stored.version == self.version + 1:
            self.history.extend(changes)
            self.version = stored.version
        elif stored.version > self.version:
            self.history = None  # a step we were not told of: its history must be read

    async def news(self, pause: float) -> tuple[Stored | None, bool]:
        """What nudges brought since the last call, waiting up to ``pause`` for one: the
        newest order handed over, and whether the order must be read (nothing else known)."""
        if not self.woken.is_set():
            with contextlib.suppress(TimeoutError):
                await within(pause, self.woken.wait())
        handed, unknown = self.handed, self.unknown or not self.woken.is_set()
        self.woken.clear()
        self.handed, self.unknown = None, False
        return handed, unknown


_listeners: dict[str, set[_Listener]] = {}


def nudge(order_id: str, stored: Stored | None = None, changes: Sequence[Change] = ()) -> None:
    """Wake whoever watches this order: it was placed or changed, and that has committed
    (``stored``: the order as committed, and ``changes`` what that added to its history, if
    the caller has them)."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for listener in tuple(_listeners.get(order_id, ())):
        if listener.loop is running:
            listener.hear(stored, changes)
        else:
            listener.loop.call_soon_threadsafe(listener.hear, stored, changes)


@contextlib.contextmanager
def _listening(order_id: str) -> Iterator[_Listener]:
    listener = _Listener(asyncio.get_running_loop())
    _listeners.setdefault(order_id, set()).add(listener)
    try:
        yield listener
    finally:
        listening = _listeners.get(order_id)
        if listening is not None:
            listening.discard(listener)
            if not listening:
                del _listeners[order_id]


@dataclass(frozen=True, slots=True)
class Seen:
    """The order as a watch saw it; ``history`` when the nudges told all of it (else read it)."""

    stored: Stored
    history: tuple[Change, ...] | None


async def watch(
    order_id: str,
    read: Callable[[], Awaitable[Stored | None]],
    *,
    visible: Callable[[Stored], bool] = lambda _: True,
    appear: float = 0.0,
    settling: bool = False,
) -> AsyncGenerator[Seen, None]:
    """The order now, then again each time it changes; ends when it is final (and settled, if
    ``settling``: a cancelled order's compensations still change it).

    An order that is not there is waited for up to ``appear`` seconds; one the caller may not
    see (``visible``) is not waited for. Either way the watch then ends without yielding: the
    caller answers both alike, so a watch tells nothing about someone else's orders.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + appear
    seen: Stored | None = None
    # Listen before reading, so a change that commits in between still wakes us.
    with _listening(order_id) as listener:
        stored = await read()
        if stored is None:
            listener.history = []  # not placed yet: the nudges will tell its whole history
        while True:
            if stored is None:
                if seen is not None or loop.time() >= give_up:
                    return
                pause = min(POLL, give_up - loop.time())
            elif not visible(stored):
                return
            else:
                if seen is None or stored.version > seen.version:
                    seen = stored
                    told = listener.history if stored.version == listener.version else None
                    yield Seen(stored, tuple(told) if told is not None else None)
                    if stored.order.is_final and (stored.order.settled or not settling):
                        return
                pause = POLL
            handed, unknown = await listener.news(pause)
            if unknown:
                stored = await read()
            elif handed is not None:
                stored = handed
