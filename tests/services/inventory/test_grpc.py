"""inventory's gRPC API, embedded with identity (for the admin's token)."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest

from mercato.api.identity.v1 import identity_pb2
from mercato.api.identity.v1.identity_pb2_grpc import IdentityStub
from mercato.api.inventory.v1 import inventory_pb2 as pb
from mercato.api.inventory.v1.inventory_pb2_grpc import InventoryStub
from mercato.contracts.events import ProductCreated, ProductDeleted
from mercato.services import load_service
from mercato.services.inventory import handlers as h
from tests.services.inventory.shop import Inventory
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = ("root@shop.example", "admin-pass-42")


async def test_get_check_and_restock(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, admin_email=ADMIN[0], admin_password=ADMIN[1])
    services = [load_service("identity"), load_service("inventory")]
    async with running(services, settings) as (system, _http):
        ctx = system.hosts["inventory"].ctx
        assert ctx is not None
        inv = Inventory(ctx)
        for product_id, quantity in (("a", 3), ("gone", 1)):
            created = ProductCreated(productId=product_id, name="x", price=1, quantity=quantity)
            await inv.feed(h.stock_product, created)
        await inv.feed(h.retire_product, ProductDeleted(productId="gone"))
        login = identity_pb2.LoginRequest(email=ADMIN[0], password=ADMIN[1])
        token = (await IdentityStub(ctx.channel("identity")).Login(login, timeout=5)).access_token
        admin = (("authorization", f"Bearer {token}"),)
        stub = InventoryStub(ctx.channel("inventory"))

        got = await stub.GetStock(pb.GetStockRequest(product_id="a"), timeout=5)
        assert (got.available, got.reserved, got.in_warehouse, got.retired) == (3, 0, 3, False)
        check = pb.CheckAvailabilityRequest(
            items=[
                pb.StockItem(product_id="a", quantity=4),
                pb.StockItem(product_id="b", quantity=1),
            ]
        )
        reply = await stub.CheckAvailability(check, timeout=5)
        assert not reply.available
        assert [(s.product_id, s.requested, s.available) for s in reply.short] == [
            ("a", 4, 3),
            ("b", 1, 0),
        ]

        restocked = await stub.Restock(
            pb.RestockRequest(product_id="a", quantity=2), metadata=admin, timeout=5
        )
        assert restocked.available == 5
        assert (await inv.events("StockUpdated"))[-1].data == {"productId": "a", "quantity": 5}
        ok = await stub.CheckAvailability(
            pb.CheckAvailabilityRequest(items=[pb.StockItem(product_id="a", quantity=5)]), timeout=5
        )
        assert ok.available and not ok.short

        refusals = [
            (pb.RestockRequest(product_id="a", quantity=2), (), grpc.StatusCode.UNAUTHENTICATED),
            (
                pb.RestockRequest(product_id="a", quantity=0),
                admin,
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (pb.RestockRequest(product_id="b", quantity=1), admin, grpc.StatusCode.NOT_FOUND),
            (
                pb.RestockRequest(product_id="gone", quantity=1),
                admin,
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
        ]
        for request, metadata, code in refusals:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Restock(request, metadata=metadata, timeout=5)
            assert caught.value.code() == code, request
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetStock(pb.GetStockRequest(product_id="b"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert (await inv.stock("a")).available == 5
