"""Property-based test: requests generated from the app's own OpenAPI schema never get a 5xx.

Schemathesis drives a real uvicorn server on loopback (real pipeline and model), with valid and
invalid bodies; every response must also match the documented schema and status codes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance
from test_api import FakeTriage, make_settings

from triage.api.main import create_app

pytestmark = pytest.mark.slow


@pytest.fixture
def api_schema(
    request: pytest.FixtureRequest, live_server: Callable[[Any], str], db_url: str, api_key: str
) -> Any:
    """The app with the real pipeline when it exists (a fake one before), on loopback."""
    options: dict[str, Any] = {
        "api_keys": [api_key],
        "max_text_length": 2_000,
        "max_batch_size": 20,
    }
    if importlib.util.find_spec("triage.pipeline") is not None:
        model = request.getfixturevalue("real_model")
        app = create_app(make_settings(db_url, model_path=model, **options))
    else:
        app = create_app(
            make_settings(db_url, **options),
            pipeline_factory=lambda _s, index: FakeTriage(repeat_index=index),
        )
    base_url = live_server(app)
    return schemathesis.openapi.from_url(f"{base_url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors(case: Any, api_key: str) -> None:
    response = case.call(headers={"X-API-Key": api_key}, timeout=30)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    # Schema-valid data may still be refused on purpose (blank text, unknown label or case,
    # text over the configured length), so "positive data accepted" is not checked.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
