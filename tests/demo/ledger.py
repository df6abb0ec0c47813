"""The demo ``ledger``: records entries and publishes ``EntryRecorded`` through its outbox.

Its trigger is one gRPC method, ``demo.Ledger/Record``, with JSON bodies (no proto needed):
``{"account": "acc-1", "amount": "12.50", "pause": 0}`` → ``{"entryId": …, "n": …}``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, func, select

from mercato.platform.envelope import Envelope
from mercato.platform.ids import new_id
from mercato.platform.runtime.service import Service, ServiceContext
from mercato.platform.unit_of_work import UnitOfWork
from tests.demo.events import EntryRecorded

MIGRATIONS = Path(__file__).parent / "migrations" / "ledger"
GRPC_SERVICE = "demo.Ledger"
RECORD = f"/{GRPC_SERVICE}/Record"

entries = Table(
    "entries",
    MetaData(),
    Column("entry_id", String(64), primary_key=True),
    Column("account", String(64), nullable=False),
    Column("n", Integer, nullable=False),
    Column("amount", Numeric(18, 4), nullable=False),
)


async def record_entry(
    uow: UnitOfWork, account: str, amount: Decimal, pause: float = 0.0
) -> Envelope:
    """Write the account's next entry and its event in the caller's transaction.

    Entries of one account must be recorded one after another (``n`` is unique per account).
    """
    last = await uow.conn.scalar(
        select(func.coalesce(func.max(entries.c.n), 0)).where(entries.c.account == account)
    )
    entry_id = new_id()
    n = int(last or 0) + 1
    await uow.conn.execute(
        entries.insert().values(entry_id=entry_id, account=account, n=n, amount=amount)
    )
    event = EntryRecorded(entryId=entry_id, account=account, n=n, amount=amount, pause=pause)
    return uow.publish(event, subject=account)


def _register(server: grpc.aio.Server, ctx: ServiceContext) -> Sequence[str]:
    async def record(request: dict[str, Any], context: grpc.aio.ServicerContext) -> bytes:
        try:
            account = str(request["account"])
            amount = Decimal(str(request["amount"]))
            pause = float(request.get("pause", 0))
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad request: {exc!r}")
        async with ctx.transaction() as uow:
            event = await record_entry(uow, account, amount, pause)
        return json.dumps({"entryId": event.data["entryId"], "n": event.data["n"]}).encode()

    handler = grpc.method_handlers_generic_handler(
        GRPC_SERVICE,
        {"Record": grpc.unary_unary_rpc_method_handler(record, request_deserializer=json.loads)},
    )
    server.add_generic_rpc_handlers((handler,))
    return [GRPC_SERVICE]


async def call_record(
    channel: grpc.aio.Channel, account: str, amount: str = "10.00", pause: float = 0.0
) -> dict[str, Any]:
    """The client side of ``Record`` (what a test, or another service, calls)."""
    method = channel.unary_unary(RECORD, response_deserializer=json.loads)
    body = json.dumps({"account": account, "amount": amount, "pause": pause}).encode()
    answer: dict[str, Any] = await method(body, timeout=10)
    return answer


service = Service(name="ledger", migrations=MIGRATIONS, grpc=_register)
