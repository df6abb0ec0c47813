"""Bounded waits: ``await within(seconds, awaitable)``, everywhere instead of
``asyncio.wait_for``. On Python 3.11 ``wait_for`` can lose the caller's own cancellation when
what it awaits finishes at that moment (a stop that never stops), and it runs a coroutine in a
task of its own; ``asyncio.timeout`` does neither."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(seconds: float | None, awaitable: Awaitable[T]) -> T:
    """The awaitable's result, or ``TimeoutError`` once ``seconds`` have passed (and the
    awaitable cancelled); ``None``: no bound."""
    async with asyncio.timeout(seconds):
        return await awaitable
