"""A schemathesis run over every operation of the gateway's OpenAPI document, as nobody, as a
customer and as the admin: generated requests (valid and invalid) never get a 5xx, and every
answer matches the document (status code, content type, body, headers). The whole system
runs embedded behind uvicorn (the WDM API on, so that its routes are in the document), in a
thread of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from mercato.services import all_services
from tests.conftest import LONG
from tests.e2e.test_saga import ADMIN
from tests.support import ServedSystem
from tests.support import test_settings as make_settings

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
CUSTOMER = {"email": "schema@example.com", "password": "correct horse 9"}
CALLERS = ("nobody", "customer", "admin")
# Examples per operation, caller and mode (MERCATO_LONG=1: more).
EXAMPLES = (
    {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 6}
    if LONG
    else {GenerationMode.POSITIVE: 4, GenerationMode.NEGATIVE: 3}
)


class SchemaSystem(ServedSystem):
    def __init__(self, data_dir: Path):
        conf = make_settings(
            data_dir,
            admin_email=ADMIN["email"],
            admin_password=ADMIN["password"],
            wdm_api=True,
            access_token_ttl=3600,  # the run outlasts the default
        )
        super().__init__(all_services(), conf)
        self.headers: dict[str, dict[str, str]] = {"nobody": {}}

    def start(self) -> None:
        super().start()
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            made = http.post("/api/v1/auth/register", json={**CUSTOMER, "name": "Schema"})
            assert made.status_code == 201, made.text
            for caller, who in (("admin", ADMIN), ("customer", CUSTOMER)):
                login = http.post("/api/v1/auth/login", json=who)
                assert login.status_code == 200, login.text
                token = login.json()["accessToken"]
                self.headers[caller] = {"Authorization": f"Bearer {token}"}
            # Something to find, so that the generated ids sometimes hit a real product.
            body = {"name": "Teapot", "price": 20, "quantity": 5}
            made = http.post("/api/v1/products", json=body, headers=self.headers["admin"])
            assert made.status_code == 201, made.text


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaSystem]:
    system = SchemaSystem(tmp_path_factory.mktemp("api-schema"))
    system.start()
    yield system
    system.stop()


@pytest.fixture(scope="module")
def api_schema(served: SchemaSystem) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served.base_url}/openapi.json")


def labels() -> list[str]:
    """Every operation of the document (read from the app, before any server runs)."""
    from mercato.services.gateway.app import create_app as gateway_app

    class Context:
        settings = make_settings(Path("."), wdm_api=True)

    document = gateway_app(Context()).openapi()  # type: ignore[arg-type]
    return [f"{m.upper()} {p}" for p, item in document["paths"].items() for m in item]


def tamed(case: schemathesis.Case) -> None:
    """Keep a case quick: the contract is the point here, not the waiting nor the volume."""
    if isinstance(case.query, dict) and "timeout" in case.query:
        case.query["timeout"] = 0  # a long poll answers at once
    if "batch_init" in case.path and isinstance(case.path_parameters, dict):
        for name, value in case.path_parameters.items():  # a bulk set-up of a few, not 100,000
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                case.path_parameters[name] = min(int(value), 3)


def test_every_operation_is_exercised(api_schema: schemathesis.BaseSchema) -> None:
    found = {op.ok().label for op in api_schema.get_all_operations()}
    assert found == set(labels())


@pytest.mark.parametrize("label", labels())
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_its_contract(
    api_schema: schemathesis.BaseSchema,
    served: ServedSystem,
    label: str,
    caller: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def keeps_contract(case: schemathesis.Case) -> None:
        tamed(case)
        case.call_and_validate(
            base_url=served.base_url, headers=served.headers[caller], checks=CHECKS
        )

    try:
        keeps_contract()
    except Unsatisfiable:
        # Nothing about it can be invalid (no parameters, or free text only): the positive
        # cases are its test.
        assert mode is GenerationMode.NEGATIVE
