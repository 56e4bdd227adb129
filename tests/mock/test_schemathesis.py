"""Fuzzing the proxy against its OpenAPI description (docs/openapi.yaml) with schemathesis.

Schemathesis generates requests for every operation of the description: conforming ones and
ones that break it (wrong types, missing required fields, bodies that are not objects, methods
the path does not have), and checks each answer against the description: a declared status,
content type, headers (`x-request-id`) and body schema (the OpenAI error format for every
4xx/5xx); a request that breaks the description must be refused (4xx); an undeclared method is
405 with `Allow`. On top of that every answer goes through the checks of test_fuzz.py: no 5xx of
the proxy's own (a relayed upstream 5xx is told apart through the mock's log), an OpenAI body
for every error, and no hang (`fuzz_support.HANG_SECONDS` per request). When the module is done,
the proxy must still run, answer /health and have logged no panic.

Not checked: that every conforming request is accepted (schemathesis' `positive_data_acceptance`).
The description lists what every request must satisfy; the upstream (or, for /v1/responses on a
chat-only upstream, the translator) may refuse more, by design.

The description says `model` names a configured model; for this proxy those are known, so the
schema under test lists them (an enum), and conforming requests get through to the mock.

How many cases: `SWITCHYARD_FUZZ_EXAMPLES` per operation (default 50) in the fuzzing phase,
plus schemathesis' coverage phase (about 50 per operation). A full run of both fuzz modules, at
least 10,000 cases (12,132 when last run):

    SWITCHYARD_FUZZ_EXAMPLES=1500 SWITCHYARD_REUSE=0 uv run pytest \\
        tests/mock/test_fuzz.py tests/mock/test_schemathesis.py -n 2 -p no:cacheprovider \\
        --junitxml=reports/fuzz.xml

Each operation records its figures (`fuzz_operation`, `fuzz_cases`, `fuzz_statuses`, ...) as
JUnit properties.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis import checks

from harness.pytest import stacks as testing
from tests.mock import fuzz_support as fz
from tests.mock.fuzz_support import FuzzProxy, ProxyBug, Tally

# Bad input is the proxy's first robustness test: `nox -s reliability` runs these too.
pytestmark = [pytest.mark.slow, pytest.mark.robustness]

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
REQUEST_SCHEMAS = ("ChatCompletionRequest", "ResponsesRequest")


def load_description() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text())
    for name in REQUEST_SCHEMAS:
        spec["components"]["schemas"][name]["properties"]["model"]["enum"] = list(fz.MODELS)
    return dict(spec)


schema = schemathesis.openapi.from_dict(load_description())

CHECKS = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.unsupported_method,
]

# Per operation: what was sent and got, across its examples.
TALLIES: dict[str, Tally] = {}


@pytest.fixture(scope="module")
def proxy(stack: testing.StackHandle) -> Iterator[FuzzProxy]:
    fuzzed = fz.start_fuzz_proxy(stack, "schemathesis")
    yield fuzzed
    try:
        fuzzed.assert_alive()
    finally:
        fz.stop_fuzz_proxy(fuzzed)


@pytest.fixture(scope="module")
def module_tag() -> str:
    """One mock tag for the module: function-scoped fixtures do not reset between examples."""
    return f"t-{uuid.uuid4().hex[:12]}"


def as_httpx(response: schemathesis.Response) -> httpx.Response:
    headers = [(name, value) for name, values in response.headers.items() for value in values]
    return httpx.Response(response.status_code, headers=headers, content=response.content)


def test_the_description_is_valid_openapi() -> None:
    """Every operation of the description loads (a broken one would be skipped silently)."""
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.label for op in operations) == [
        "GET /health",
        "GET /status",
        "GET /v1/models",
        "GET /v1/models/{model}",
        "POST /v1/chat/completions",
        "POST /v1/responses",
    ]


@schema.parametrize()
@settings(
    max_examples=fz.examples(),
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_proxy_conforms_to_its_openapi_description(
    case: schemathesis.Case, proxy: FuzzProxy, module_tag: str, request: pytest.FixtureRequest
) -> None:
    tally = TALLIES.setdefault(case.operation.label, Tally())
    try:
        response = case.call(
            base_url=proxy.url, headers={"x-mock-tag": module_tag}, timeout=fz.HANG_SECONDS
        )
    except requests.Timeout as error:
        raise ProxyBug(f"hang: {case.as_curl_command(base_url=proxy.url)}") from error
    except requests.ConnectionError as error:
        raise ProxyBug(f"no answer: {case.as_curl_command(base_url=proxy.url)}") from error
    if response.stream_cut_short and response.elapsed >= fz.HANG_SECONDS:
        raise ProxyBug(f"a stream still running after the bound: {case.as_curl_command()}")
    method = str(response.request.method)
    fz.check_common(proxy, module_tag, method, as_httpx(response), tally)
    tally.record(request.node, fuzz_operation=case.operation.label)
    case.validate_response(response, checks=CHECKS)
