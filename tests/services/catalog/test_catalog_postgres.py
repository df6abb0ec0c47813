"""catalog on PostgreSQL: search escaping, decimal prices and the once-only demo catalog."""

from __future__ import annotations

from pathlib import Path

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
    async with running(services, settings) as (_system, http):
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
    assert demo["total"] >= 5
    async with running(services, settings) as (_system, http):
        again = (await http.get("/api/v1/products", params={"pageSize": 100})).json()
    assert again["total"] == demo["total"] + 1
