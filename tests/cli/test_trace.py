"""``mercato trace ORDER_ID``: a delivered order's hops, read from the services' databases
after the system has stopped: its status history, and each event written and handled, in
order of time, with the waits between."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import structlog
from typer.testing import CliRunner

from mercato.cli.main import app
from tests.e2e.test_saga import open_shop

runner = CliRunner()


def trace(data_dir: Path, *args: str) -> tuple[int, str]:
    saved = structlog.get_config()
    result = runner.invoke(
        app, ["trace", *args], env={"MERCATO_DATA_DIR": str(data_dir), "COLUMNS": "400"}
    )
    structlog.configure(**saved)  # the command logged onto CliRunner's now closed stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


async def delivered_order(data_dir: Path) -> str:
    async for shop in open_shop(data_dir):
        who = await shop.customer()
        cup = await shop.product(price=5, quantity=3)
        order_id = str((await shop.place(who, [(cup, 1)]))["orderId"])
        await shop.reaches(who, order_id, "DELIVERING")
        shipment = await shop.shipment(who, order_id, "delivery")
        await shop.carrier(shipment["shipmentId"], "delivered")
        await shop.reaches(who, order_id, "COMPLETED")
    return order_id


def test_trace_shows_each_hop_of_a_delivered_order_in_time_order(tmp_path: Path) -> None:
    order_id = asyncio.run(delivered_order(tmp_path))

    code, out = trace(tmp_path, order_id, "--json")
    assert code == 0, out
    document = json.loads(out)
    assert document["orderId"] == order_id
    hops = [(h["service"], h["what"], h["detail"]) for h in document["hops"]]
    times = [h["sinceStartMs"] for h in document["hops"]]
    assert times == sorted(times) and times[0] == 0
    statuses = [d for s, w, d in hops if w == "status"]
    assert statuses == [
        "CREATED",
        "CREATED → PAID",
        "PAID → RESERVED",
        "RESERVED → DELIVERING",
        "DELIVERING → COMPLETED",
    ]
    for hop in [
        ("order", "wrote", "OrderCreated"),
        ("payment", "handled", "OrderCreated"),
        ("inventory", "handled", "OrderCreated"),
        ("payment", "wrote", "PaymentCompleted"),
        ("order", "handled", "PaymentCompleted"),
        ("shipping", "handled", "OrderStatusChanged"),
        ("shipping", "wrote", "ShipmentCreated"),
        ("order", "handled", "ShipmentDelivered"),
    ]:
        assert hop in hops, hop
    # An event is written, then handled, with the wait between.
    created = [h for h in document["hops"] if h["detail"] == "OrderCreated"]
    assert [h["what"] for h in created] == ["wrote", "handled", "handled"]
    assert all(h["waitedMs"] >= 0 for h in created[1:])
    assert created[1]["at"] >= created[0]["at"]
    paid = next(h for h in document["hops"] if h["detail"] == "PaymentCompleted")
    assert paid["note"] == "after OrderCreated"

    code, out = trace(tmp_path, order_id)
    assert code == 0 and "PaymentCompleted" in out and "handled" in out, out


def test_an_unknown_or_malformed_order_id_is_a_clear_error(tmp_path: Path) -> None:
    code, out = trace(tmp_path, "no-such-order")
    assert code == 1 and "no order no-such-order" in out
    code, out = trace(tmp_path, "a%b' OR 1=1")
    assert code == 2 and "is not an order id" in out
