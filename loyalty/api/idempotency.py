"""Idempotency-Key on every write: a retry gets the first response, another body with the key a 409.

Keys are scoped to the API key's program. The write and the record of its
response commit together: if two identical requests race, the loser's insert of
the record fails, its write is rolled back, and it answers the winner's response.
Refusals (4xx) are not recorded, so a client may fix the request and retry with
the same key; the services underneath are idempotent by reference anyway.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from django.db import IntegrityError, transaction
from rest_framework.response import Response

from loyalty.api.models import IdempotencyRecord
from loyalty.audit import acting_as
from loyalty.errors import ApplicationError

HEADER = "Idempotency-Key"
MAX_LENGTH = 100


class IdempotencyConflict(ApplicationError):
    code = "idempotency_conflict"
    status = 409


def _fingerprint(request) -> str:
    body = json.dumps(request.data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(f"{request.method} {request.path}\n{body}".encode()).hexdigest()


def idempotency_key(request) -> str:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise ApplicationError(
            f"Writes need an {HEADER} header (any unique string, reused only for retries).",
            code="idempotency_key_required",
            field=HEADER,
        )
    if len(key) > MAX_LENGTH:
        raise ApplicationError(f"An {HEADER} has at most {MAX_LENGTH} characters.", field=HEADER)
    return key


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(f"This {HEADER} was used for a different request.", field=HEADER)
    return Response(record.response_body, status=record.status_code, headers={"Idempotent-Replayed": "true"})


def idempotent(request, write: Callable[[str], Response]) -> Response:
    """Run `write(key)` once per Idempotency-Key, as the API key, and record its response."""
    api_key = request.auth
    key = idempotency_key(request)
    fingerprint = _fingerprint(request)
    found = IdempotencyRecord.objects.filter(program_id=api_key.program_id, key=key).first()
    if found is not None:
        return _replay(found, fingerprint)
    try:
        with acting_as(f"api:{api_key.name}"), transaction.atomic():
            response = write(key)
            IdempotencyRecord.objects.create(
                program_id=api_key.program_id,
                api_key=api_key,
                key=key,
                method=request.method,
                path=request.path[:300],
                fingerprint=fingerprint,
                status_code=response.status_code,
                response_body=json.loads(json.dumps(response.data, default=str)),
            )
    except IntegrityError:
        found = IdempotencyRecord.objects.filter(program_id=api_key.program_id, key=key).first()
        if found is None:
            raise
        return _replay(found, fingerprint)
    return response
