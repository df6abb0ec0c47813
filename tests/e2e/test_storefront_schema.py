"""A schemathesis run against the gateway's OpenAPI document for the product and cart routes:
generated requests (valid and invalid) never get a 5xx, and every answer matches the schema
(status code, content type, body, headers).

The storefront runs embedded behind uvicorn on a free port, in a thread of its own.
"""

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
from mercato.services import load_service
from tests.e2e.test_storefront import ADMIN, STOREFRONT
from tests.support import test_settings as make_settings

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


class ServedShop:
    def __init__(self, data_dir: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        conf = make_settings(data_dir, admin_email=ADMIN["email"], admin_password=ADMIN["password"])
        app = create_app(System([load_service(n) for n in STOREFRONT], conf))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()))
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.headers: dict[str, str] = {}

    def start(self) -> None:
        self.thread.start()
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            for _ in range(400):
                if self.server.started:
                    break
                threading.Event().wait(0.05)
            assert self.server.started, "the storefront did not start"
            login = http.post("/api/v1/auth/login", json=ADMIN)
            assert login.status_code == 200, login.text
            self.headers = {"Authorization": f"Bearer {login.json()['accessToken']}"}
            # Something to find, so that the generated ids sometimes hit a real product.
            body = {"name": "Teapot", "price": 20, "quantity": 5}
            made = http.post("/api/v1/products", json=body, headers=self.headers)
            assert made.status_code == 201, made.text

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedShop]:
    served = ServedShop(tmp_path_factory.mktemp("schema"))
    served.start()
    yield served
    served.stop()


OPERATIONS = [
    "GET /api/v1/products",
    "POST /api/v1/products",
    "GET /api/v1/products/{productId}",
    "PATCH /api/v1/products/{productId}",
    "DELETE /api/v1/products/{productId}",
    "GET /api/v1/cart",
    "POST /api/v1/cart/items",
    "PATCH /api/v1/cart/items/{productId}",
    "DELETE /api/v1/cart/items/{productId}",
    "POST /api/v1/cart/checkout",
]


@pytest.fixture(scope="module")
def storefront_schema(shop: ServedShop) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{shop.base_url}/openapi.json")
    return schema.include(path_regex=r"^/api/v1/(products|cart)")


def test_every_storefront_route_is_exercised(storefront_schema: schemathesis.BaseSchema) -> None:
    found = {op.ok().label for op in storefront_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_storefront_routes_keep_their_contract(
    storefront_schema: schemathesis.BaseSchema, shop: ServedShop, label: str, mode: GenerationMode
) -> None:
    operation = storefront_schema.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=20,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def keeps_contract(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=shop.base_url, headers=shop.headers, checks=CHECKS)

    keeps_contract()
