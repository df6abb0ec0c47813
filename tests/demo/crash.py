"""A ledger process that dies by SIGKILL at a chosen point (for the outbox crash tests).

``python -m tests.demo.crash DATA_DIR DATABASE_TEMPLATE|- WHEN ACCOUNT COUNT [BROKER NAMESPACE]``

- ``after-commit``: records COUNT entries in one transaction and is killed the moment it has
  committed, before anything could publish them (where the relay would be woken);
- ``after-publish``: commits, then relays them through BROKER and is killed once the broker has
  confirmed them but before the rows are marked sent (so they will go out a second time).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from mercato.platform.envelope import Envelope
from mercato.platform.outbox import OutboxRelay
from mercato.platform.unit_of_work import transaction
from tests.demo.ledger import record_entry
from tests.demo.probe import broker_bus, service_engine


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingBus:
    """Publishes through the real bus, then dies before the relay can mark anything sent."""

    def __init__(self, bus: Any):
        self.bus = bus

    async def publish(self, batch: Sequence[tuple[str, Envelope]]) -> list[bool]:
        confirmed: list[bool] = await self.bus.publish(batch)
        assert all(confirmed)
        die()
        return confirmed


async def main(argv: list[str]) -> None:
    data_dir, template, when, account, count = argv[:5]
    engine = await service_engine(None if template == "-" else template, "ledger", Path(data_dir))
    async with transaction(
        engine, "ledger", on_events=(lambda rows: die()) if when == "after-commit" else None
    ) as uow:
        for _ in range(int(count)):
            await record_entry(uow, account, Decimal("10.00"))
    if when == "after-publish":
        bus = broker_bus(argv[5], argv[6])
        await bus.connect()
        await OutboxRelay(engine, DyingBus(bus), "ledger").relay_once()  # type: ignore[arg-type]
    sys.exit("still alive: the kill did not happen")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
