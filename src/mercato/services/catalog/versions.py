"""The catalog's version as it moves, for whoever keeps pages of products (``WatchVersion``).

One reader per process reads ``catalog_version`` every ``interval`` seconds while anyone
watches, and stops when no one does. Each watcher gets the version when it moves, and again
every ``HEARTBEAT`` seconds when it does not, so that a watcher can tell a quiet catalog from
a lost one. The version is moved by triggers in the database (catalog_0003), whichever
replica or handler wrote, so reading it is the one way to see every change. A read that fails
ends every watch (the watchers fall back to asking each time) rather than leaving them with a
version that may have moved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import structlog

from mercato.platform.storage.sql import Database
from mercato.services.catalog import store

log = structlog.get_logger(__name__)

HEARTBEAT = 1.0  # seconds: the version is sent at least this often, moved or not


class VersionWatch:
    def __init__(self, db: Database, interval: float):
        self._db = db
        self.interval = interval
        self._version: int | None = None
        self._failure: BaseException | None = None
        self._moved = asyncio.Event()
        self._watchers = 0
        self._reader: asyncio.Task[None] | None = None

    async def changes(self) -> AsyncGenerator[int, None]:
        """The current version, then each new one; raises if reading it fails."""
        self._watchers += 1
        if self._reader is None or self._reader.done():
            self._version, self._failure = None, None
            self._reader = asyncio.create_task(self._read(), name="catalog:versions")
        try:
            sent: int | None = None
            while True:
                moved = self._moved
                if self._failure is not None:
                    raise self._failure
                if self._version is not None and self._version != sent:
                    sent = self._version
                    yield sent
                    continue
                try:
                    async with asyncio.timeout(HEARTBEAT):  # not wait_for (see gateway/pages.py)
                        await moved.wait()
                except TimeoutError:  # still the same: said again, so silence means trouble
                    sent = None
        finally:
            self._watchers -= 1
            if self._watchers == 0 and self._reader is not None:
                # Not awaited: a cancellation of this watcher arriving meanwhile would be
                # taken for the reader's. A new watcher starts a reader of its own.
                self._reader.cancel()
                self._reader = None

    async def _read(self) -> None:
        try:
            while True:
                async with self._db.connect() as conn:
                    version = await store.current_version(conn)
                if version != self._version:
                    self._version = version
                    self._wake()
                await asyncio.sleep(self.interval)
        except Exception as exc:
            log.warning("catalog version unreadable; watches end", error=str(exc))
            self._failure = exc
            self._wake()

    def _wake(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()
