"""The process's own app: health, readiness and metrics are its own; with a service app
(the gateway) every other path goes to that app; without one, an unknown path is a
problem+json 404 of its own."""

from __future__ import annotations

from pathlib import Path

from mercato.services import load_service
from tests.support import running
from tests.support import test_settings as make_settings

PROBLEM = "application/problem+json"


async def test_own_routes_then_the_gateway(tmp_path: Path) -> None:
    services = [load_service(name) for name in ("catalog", "gateway")]
    async with running(services, make_settings(tmp_path)) as (_, http):
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json()["status"] == "ok"
        assert "mercato_" in (await http.get("/metrics")).text
        assert (await http.post("/healthz")).status_code == 405
        listed = await http.get("/api/v1/products")
        assert listed.status_code == 200 and listed.json()["total"] == 0
        assert listed.headers["x-request-id"]  # the gateway's own middleware ran
        for path in ("/nowhere", "/healthz/", "/api/v1/nothing"):
            missing = await http.get(path)
            assert missing.status_code == 404, path
            assert missing.headers["content-type"] == PROBLEM
            assert missing.json()["instance"] == path
        assert (await http.get("/openapi.json")).json()["info"]["title"] == "Mercato"


async def test_without_a_service_app_unknown_paths_are_its_own_404(tmp_path: Path) -> None:
    async with running([load_service("catalog")], make_settings(tmp_path)) as (_, http):
        assert (await http.get("/healthz")).status_code == 200
        missing = await http.get("/api/v1/products")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == PROBLEM
        assert missing.json()["detail"] == "no route GET /api/v1/products"
