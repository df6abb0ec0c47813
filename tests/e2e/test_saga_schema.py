"""A schemathesis run against the gateway's OpenAPI document for the order, shipment and
compatibility routes: generated requests (valid and invalid) never get a 5xx, and every answer
matches the schema. The whole system runs embedded behind uvicorn, in a thread of its own."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from mercato.platform.runtime.system import System, create_app
from mercato.services import all_services
from tests.e2e.test_saga import ADMIN
from tests.support import test_settings as make_settings

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
ROUTES = r"^/(api/v1/(orders|shipments)|oms/orders)"


class ServedSystem:
    def __init__(self, data_dir: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        conf = make_settings(data_dir, admin_email=ADMIN["email"], admin_password=ADMIN["password"])
        config = uvicorn.Config(
            create_app(System(all_services(), conf)),
            host="127.0.0.1",
            port=self.port,
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.headers: dict[str, str] = {}

    def start(self) -> None:
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                break
            threading.Event().wait(0.05)
        assert self.server.started, "the system did not start"
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            login = http.post("/api/v1/auth/login", json=ADMIN)
            assert login.status_code == 200, login.text
            self.headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSystem]:
    system = ServedSystem(tmp_path_factory.mktemp("saga-schema"))
    system.start()
    yield system
    system.stop()


@pytest.fixture(scope="module")
def saga_schema(served: ServedSystem) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")
    return schema.include(path_regex=ROUTES)


OPERATIONS = [
    "POST /api/v1/orders",
    "GET /api/v1/orders",
    "GET /api/v1/orders/{orderId}",
    "POST /api/v1/orders/{orderId}/cancel",
    "GET /api/v1/orders/{orderId}/wait",
    "GET /api/v1/orders/{orderId}/stream",
    "POST /api/v1/orders/create",
    "POST /api/v1/orders/cancel",
    "GET /api/v1/orders/list",
    "GET /api/v1/orders/status",
    "GET /api/v1/orders/status_change_list",
    "POST /oms/orders",
    "GET /oms/orders/{orderId}",
    "PUT /oms/orders/{orderId}",
    "GET /api/v1/shipments",
    "GET /api/v1/shipments/{shipmentId}",
    "POST /api/v1/shipments/{shipmentId}/delivered",
    "POST /api/v1/shipments/{shipmentId}/failed",
]


def test_every_saga_route_is_exercised(saga_schema: schemathesis.BaseSchema) -> None:
    found = {op.ok().label for op in saga_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_saga_routes_keep_their_contract(
    saga_schema: schemathesis.BaseSchema, served: ServedSystem, label: str, mode: GenerationMode
) -> None:
    operation = saga_schema.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def keeps_contract(case: schemathesis.Case) -> None:
        # A wait is capped short: the contract is the point here, not the waiting.
        if isinstance(case.query, dict) and "timeout" in case.query:
            case.query["timeout"] = 0
        case.call_and_validate(base_url=served.base_url, headers=served.headers, checks=CHECKS)

    keeps_contract()
