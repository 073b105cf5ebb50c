"""Schemathesis against our own OpenAPI schema: whatever it sends, the API never answers 5xx.

The schema is generated from the code (as /api/schema/ serves it); every operation
gets generated requests, sent through Django's test client with a valid key of
program A, so the requests reach the views (and the services) rather than stopping
at authentication.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlencode

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_never_answers_5xx(case, key_a, member_a, rules_a, reward_a):
    client = APIClient(raise_request_exception=False)
    headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    headers.setdefault("Idempotency-Key", uuid.uuid4().hex)
    # Some examples aim at our fixtures: a real member number half of the time.
    path = case.formatted_path
    extra = {f"HTTP_{name.upper().replace('-', '_')}": str(value) for name, value in headers.items()}
    body = None if case.body is None or case.method.upper() == "GET" else json.dumps(case.body, default=str)
    response = client.generic(
        case.method.upper(),
        path,
        data=body or "",
        content_type="application/json",
        QUERY_STRING=urlencode(case.query or {}, doseq=True),
        HTTP_AUTHORIZATION=f"Api-Key {key_a.raw}",
        **extra,
    )
    assert response.status_code < 500, (case.method, path, case.body, response.content[:500])
