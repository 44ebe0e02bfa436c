"""Property-based tests from the service's own OpenAPI document against a real uvicorn server: no input gives a 5xx,
and every response matches the status codes, content types, headers and schemas the document declares."""

from __future__ import annotations

import itertools

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.conftest import OPERATOR_KEY, make_service
from tests.serving.live import live_server

# Not positive_data_acceptance: a schema-valid value may still be refused with 422 by design (an opaque cursor this
# API did not issue, a window key for 2025-13-45, a config change breaking a cross-key rule such as weights summing
# to 1), which no JSON Schema can express.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]


def test_no_input_makes_the_service_fail_or_break_its_contract(tmp_path, populated_db):
    service = make_service(tmp_path, populated_db, api={"rate_limit_per_minute": 1_000_000})
    with live_server(service.app()) as url:
        # The control endpoints need Dagster (503 without it, by design): they are tested against a real one.
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json").exclude(path_regex="^/control")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/predictions/{symbol}", "/alerts", "/config", "/audit"}
        for operation, mode in itertools.product(operations, schemathesis.GenerationMode):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(headers={"X-API-Key": OPERATOR_KEY}, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:  # no parameter to make invalid (GET /health): only its positive run counts
                assert mode is schemathesis.GenerationMode.NEGATIVE
