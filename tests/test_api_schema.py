"""Schemathesis against the API's own /openapi.json: no 500s, responses match the schema.

Runs the generated requests over a real uvicorn server on 127.0.0.1 (``serve_app``) with a
seeded SQLite database; a bounded number of examples per operation keeps it under a minute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from service.api import create_app
from service.storage import Storage, make_engine, migrate
from tests.conftest import serve_app
from tests.test_api_query import fill

# Examples per operation: enough to hit every parameter's edges, few enough for CI.
EXAMPLES = 40


def test_api_conforms_to_its_openapi(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    migrate(engine)
    storage = Storage(engine)
    fill(storage, 30)
    app = create_app(storage)
    checked = []
    with serve_app(app) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        for result in schema.get_all_operations():
            operation = result.ok()

            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy())
            def conforms(case: Any) -> None:
                case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

            conforms()
            checked.append(operation.label)
    storage.close()
    assert "GET /api/v1/hits" in checked and "GET /api/v1/stats" in checked
