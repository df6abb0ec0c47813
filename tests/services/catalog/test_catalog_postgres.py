"""catalog on PostgreSQL: "%" and "_" searched as plain characters, decimal prices and the
once-only demo catalog."""

from __future__ import annotations

from pathlib import Path

import grpc
import grpc.aio
import pytest

from mercato.api.catalog.v1 import catalog_pb2 as pb
from mercato.api.catalog.v1.catalog_pb2_grpc import CatalogStub
from mercato.services import load_service
from tests.support import running
from tests.support import test_settings as make_settings

ADMIN = {"email": "root@shop.example", "password": "admin-pass-42"}


async def test_catalog_on_postgres(tmp_path: Path, postgres_template: str) -> None:
    settings = make_settings(
        tmp_path,
        database_url=postgres_template,
        demo_catalog=True,
        admin_email=ADMIN["email"],
        admin_password=ADMIN["password"],
    )
    services = [load_service(name) for name in ("identity", "catalog", "gateway")]
    async with running(services, settings) as (system, http):
        demo = (await http.get("/api/v1/products", params={"pageSize": 100})).json()
        token = (await http.post("/api/v1/auth/login", json=ADMIN)).json()["accessToken"]
        admin = {"Authorization": f"Bearer {token}"}
        body = {"name": "50% off_sale mug", "price": 0.1, "category": "Kitchen"}
        made = await http.post("/api/v1/products", json=body, headers=admin)
        assert made.status_code == 201, made.text
        assert made.json()["price"] == 0.1
        for text, expected in (("50%", 1), ("off_sale", 1), ("f_s", 1), ("5_%", 0)):
            found = await http.get("/api/v1/products", params={"q": text})
            assert found.json()["total"] == expected, text
        cheap = await http.get("/api/v1/products", params={"category": "kitchen", "sort": "price"})
        assert cheap.json()["items"][0]["name"] == "50% off_sale mug"
        past = await http.get("/api/v1/products", params={"q": "mug", "page": 9, "pageSize": 1})
        assert past.json()["items"] == [] and past.json()["total"] >= 1
        ctx = system.hosts["gateway"].ctx
        assert ctx is not None
        stub = CatalogStub(ctx.channel("catalog"))  # type: ignore[no-untyped-call]
        ids = [made.json()["productId"], demo["items"][0]["productId"]]
        asked = [pb.ItemRequest(product_id=i, quantity=2) for i in ids]
        reply = await stub.ValidateItems(pb.ValidateItemsRequest(items=asked), timeout=5)
        assert [(x.product_id, x.quantity) for x in reply.items] == [(ids[0], 2), (ids[1], 2)]
        assert reply.items[0].price.amount == "0.10"
        await http.delete(f"/api/v1/products/{ids[1]}", headers=admin)
        for product_id, code in (
            (ids[1], grpc.StatusCode.FAILED_PRECONDITION),
            ("never", grpc.StatusCode.NOT_FOUND),
        ):
            request = pb.ValidateItemsRequest(
                items=[*asked[:1], pb.ItemRequest(product_id=product_id, quantity=1)]
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ValidateItems(request, timeout=5)
            assert refused.value.code() == code
    assert demo["total"] >= 5
    async with running(services, settings) as (_system, http):
        again = (await http.get("/api/v1/products", params={"pageSize": 100})).json()
    assert again["total"] == demo["total"]  # one made, one deleted
