"""The API holds its own contract under a property-based fuzzer: schemathesis generates requests from the OpenAPI
document the app serves and checks every answer against it (no server error, a documented status code, a body
and headers that fit the schema). Bounded examples per operation, against the app on the local stack."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.core.conftest import Api, ApiTenant

pytestmark = [pytest.mark.stack, pytest.mark.slow]

EXAMPLES_PER_OPERATION = 40
# What the contract promises: no server error, only documented status codes, and bodies, content types and headers
# as documented. (Whether a schema-valid request is accepted is not among them: a syntactically valid callback URL
# may still point at a private address, a manifest's lines are checked one by one — those answer a documented 400.)
CONTRACT_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="session")
def api_schema(app_host: Api) -> Any:
    with urllib.request.urlopen(f"{app_host.base_url}/api/openapi.json", timeout=30) as response:
        document = json.loads(response.read())
    return schemathesis.openapi.from_dict(document)


@pytest.fixture(scope="session")
def fuzz_tenant(make_session_tenant: Any) -> ApiTenant:
    tenant: ApiTenant = make_session_tenant("new")
    return tenant


def test_every_operation_answers_as_documented(api_schema: Any, app_host: Api, fuzz_tenant: ApiTenant) -> None:
    # Driven by Hypothesis directly, one operation after another (schemathesis' pytest plugin does not run under
    # this pytest): a failure names the operation and the request that broke it.
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 14, [op.label for op in operations]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate],
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                base_url=f"{app_host.base_url}/api",
                headers={"Authorization": f"Bearer {fuzz_tenant.key}"},
                checks=CONTRACT_CHECKS,
            )

        try:
            check()
        except BaseException as exc:  # every operation is fuzzed; all failures are reported together
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
