"""One import run (its counts, who ran it, its file), its row errors, and the keys it landed."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse
from simple_history.models import HistoricalRecords

from loyalty.models import Program


class ImportBatch(models.Model):
    """One file imported into one program, kept with its counts and its report."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to run"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="import_batches")
    kind = models.CharField(max_length=40, help_text="Which importer reads the file.")
    filename = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, help_text="Hash of the file's bytes.")
    # The file itself, so a Celery worker in another process can read it by the batch id.
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    total_rows = models.PositiveIntegerField(default=0)
    landed = models.PositiveIntegerField(default=0, help_text="Good rows written.")
    skipped = models.PositiveIntegerField(
        default=0, help_text="Rows imported before (same key, same values)."
    )
    failed = models.PositiveIntegerField(default=0, help_text="Rows refused; see the report.")
    message = models.CharField(max_length=500, blank=True, help_text="Why the whole file failed, if it did.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=120)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    history = HistoricalRecords(excluded_fields=["content"])

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "import batches"
        indexes = [models.Index(fields=["program", "kind", "-id"], name="import_batch_recent")]

    def __str__(self) -> str:
        return f"Import {self.pk} of {self.filename}"

    def get_absolute_url(self) -> str:
        return reverse("imports:detail", kwargs={"pk": self.pk})

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)


class ImportRowError(models.Model):
    """A refused row: its line in the file (the header is line 1), the field at fault and why."""

    batch = models.ForeignKey(ImportBatch, on_delete=models.CASCADE, related_name="errors")
    line = models.PositiveIntegerField()
    key = models.CharField(max_length=200, blank=True)
    field = models.CharField(max_length=60, blank=True)
    message = models.CharField(max_length=500)

    class Meta:
        ordering = ["batch", "line", "id"]

    def __str__(self) -> str:
        return f"line {self.line}: {self.field or 'row'}: {self.message}"


class ImportedKey(models.Model):
    """A row key that landed: re-importing the same key is skipped, a changed row is refused."""

    # No index of its own: the unique constraint leads with it, and every landed row writes each index.
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    kind = models.CharField(max_length=40)
    key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="Hash of the row's cleaned values.")
    batch = models.ForeignKey(ImportBatch, on_delete=models.PROTECT, related_name="keys")
    line = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["program", "kind", "key"], name="imported_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}"
