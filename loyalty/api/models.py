"""API keys (stored hashed, program-scoped, revocable) and the idempotency records of API writes."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from loyalty.models import Program


def hash_key(raw: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKey(models.Model):
    """A client system's credential for one program. The raw key is shown once, at creation."""

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="api_keys")
    name = models.CharField(max_length=80, help_text="Who uses it: 'pos-paris', 'e-shop'...")
    prefix = models.CharField(max_length=16, unique=True, editable=False, help_text="Public part of the key.")
    hashed_key = models.CharField(max_length=64, editable=False)
    rate_limit = models.CharField(
        max_length=20, default="600/min", help_text="Requests allowed per period: 600/min, 20/s, 10000/hour."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords(excluded_fields=["last_used_at", "hashed_key"])

    class Meta:
        ordering = ["program", "name"]
        verbose_name = "API key"
        constraints = [models.UniqueConstraint(fields=["program", "name"], name="api_key_name_unique")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> tuple[str, str, str]:
        """(raw key, prefix, hash): the raw key is `<prefix>.<secret>`."""
        prefix = secrets.token_hex(4)
        raw = f"{prefix}.{secrets.token_urlsafe(32)}"
        return raw, prefix, hash_key(raw)


class IdempotencyRecord(models.Model):
    """The first response to a write made with an Idempotency-Key, replayed for a retry."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64, help_text="Hash of method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["program", "key"], name="idempotency_key_unique")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"
