"""The audit browser's reads: one timeline over every history-tracked model and the points ledger.

Which models: every model with a django-simple-history manager (found through
`apps.get_models()`, so a model another app adds appears without a change here),
plus `LedgerEntry`, whose rows are immutable and are their own history (every
entry is a "+" with its `actor_label` as author).

Scope (who sees which rows): a row belongs to a program when its model has
- a `program` foreign key (most business models), or is `Program` itself, or
- a `member` foreign key (the member's program), or
- a foreign key to a model that has one of those (a dispute comment, through its dispute).
A supervisor sees the rows of their programs; models with no such link (a user
profile, say) are admin-only, and so are rows whose linked object is gone.

Paging across many tables with a constant number of queries: one UNION ALL of
the tables' (date, id, model) keys, filtered and ordered in SQL, one page at a
time (plus one row, to know whether there is an older page: no COUNT over
millions of rows); then the page's rows are fetched per model present on the
page (two queries per model: the rows, and the versions just before them for the
diff), whatever the size of the tables. On PostgreSQL each table contributes
only its newest (offset + page) rows, read along an index: history_date for the
historical tables, the primary key for the ledger (ids follow posting order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.db.models import CharField, F, OuterRef, Q, Subquery, Value
from django.http import Http404
from django.urls import NoReverseMatch, reverse

from loyalty.access import user_role
from loyalty.models import LedgerEntry, Member, Program
from loyalty.roles import Role

LEDGER = "loyalty.ledgerentry"
PAGE_SIZE = 50
# Moved on every save; a diff that lists them says nothing.
NOISE_FIELDS = {"updated_at", "created_at"}


@dataclass(frozen=True)
class AuditSource:
    """One table of the timeline: a historical model, or the ledger."""

    label: str  # "app_label.model_name" of the tracked model
    name: str  # what people call it ("member", "dispute")
    model: type[models.Model]  # the tracked model
    table: type[models.Model]  # where its rows are: the historical model, or LedgerEntry
    program_path: str | None  # lookup from a row of `table` to its Program (None: admin-only)
    member_path: str | None  # lookup from a row of `table` to its Member

    @property
    def is_ledger(self) -> bool:
        return self.label == LEDGER

    @property
    def date_field(self) -> str:
        return "posted_at" if self.is_ledger else "history_date"

    @property
    def key_field(self) -> str:
        return "id" if self.is_ledger else "history_id"

    @property
    def object_field(self) -> str:
        """The tracked object's id: `id` on a historical row (the object's, not the version's);
        a ledger entry is its own object."""
        return "id"


def _fk_fields(model) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if f.many_to_one or f.one_to_one]


def _direct_path(model, *, target) -> str | None:
    if model is target:
        return "id"
    for f in _fk_fields(model):
        if f.related_model is target:
            return f.name
    return None


def _path_to(model, *, target) -> str | None:
    """Lookup from `model` to `target` (itself, a foreign key, or through one foreign key)."""
    direct = _direct_path(model, target=target)
    if direct:
        return direct
    preferred = [f for f in _fk_fields(model) if f.name in ("program", "member")]
    for f in preferred + [f for f in _fk_fields(model) if f not in preferred]:
        related = f.related_model
        if related is None or related is model or related is get_user_model():
            continue
        hop = _direct_path(related, target=target)
        if hop:
            return f"{f.name}__{hop}" if hop != "id" else f.name
    return None


def _program_path(model) -> str | None:
    path = _path_to(model, target=Program)
    if path:
        return path
    member = _path_to(model, target=Member)
    return f"{member}__program" if member else None


@cache
def audit_sources() -> dict[str, AuditSource]:
    """Every tracked model and the ledger, by label (computed once per process)."""
    sources = {}
    for model in apps.get_models():
        manager = getattr(model._meta, "simple_history_manager_attribute", None)
        if not manager:
            continue
        label = model._meta.label_lower
        historical = getattr(model, manager).model
        program = _program_path(model)
        sources[label] = AuditSource(
            label=label,
            name=str(model._meta.verbose_name),
            model=model,
            table=historical,
            program_path=program,
            member_path=_path_to(model, target=Member),
        )
    sources[LEDGER] = AuditSource(
        label=LEDGER,
        name="ledger entry",
        model=LedgerEntry,
        table=LedgerEntry,
        program_path="program",
        member_path="account__member",
    )
    return dict(sorted(sources.items(), key=lambda item: item[1].name))


# --- The timeline ----------------------------------------------------------------


@dataclass(frozen=True)
class AuditFilters:
    program: Program | None = None
    model: str | None = None  # a label of audit_sources()
    object_id: int | None = None
    member: Member | None = None
    author: str = ""  # a username, or a label such as "job:expire_points"
    change_type: str = ""  # "+", "~" or "-"
    since: datetime | None = None
    until: datetime | None = None  # exclusive


@dataclass
class AuditRow:
    source: AuditSource
    record: models.Model  # a historical record, or a LedgerEntry
    date: datetime
    change_type: str
    author: str
    reason: str
    object_id: int
    object_repr: str
    member_number: str | None
    program_id: int | None
    changes: list = field(default_factory=list)  # loyalty.selectors.FieldChange
    previous: models.Model | None = None

    @property
    def key(self) -> int:
        return self.record.pk

    @property
    def detail_url(self) -> str:
        return reverse("supervisor:audit_detail", kwargs={"model": self.source.label, "key": self.key})

    @property
    def member_url(self) -> str | None:
        if not self.member_number:
            return None
        return reverse("loyalty:member_detail", kwargs={"number": self.member_number})

    @property
    def object_url(self) -> str | None:
        return object_url(self.source, self.object_id)

    @property
    def change_label(self) -> str:
        return {"+": "Created", "~": "Changed", "-": "Deleted"}[self.change_type]


def object_url(source: AuditSource, object_id: int) -> str | None:
    """The object's own page, or its admin page, or None."""
    if source.is_ledger or source.model is Member:
        return None  # the member link covers it
    get_url = getattr(source.model, "get_absolute_url", None)
    if get_url is not None:
        try:
            return get_url(source.model(pk=object_id))
        except (NoReverseMatch, AttributeError, ValueError, TypeError):
            pass
    opts = source.model._meta
    try:
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[object_id])
    except NoReverseMatch:
        return None


def visible_sources(*, user) -> list[AuditSource]:
    """The tables the user may read: all for admins, the program-linked ones for supervisors."""
    role = user_role(user)
    if role == Role.ADMIN:
        return list(audit_sources().values())
    if role == Role.SUPERVISOR:
        return [s for s in audit_sources().values() if s.program_path]
    return []


def _in_programs(rows: models.QuerySet, source: AuditSource, programs: models.QuerySet) -> models.QuerySet:
    # A subquery of program ids (not a join through the staff table), so each table keeps its
    # own index on the program column.
    return rows.filter(**{f"{source.program_path}__in": programs.values("pk")})


def _branch(source: AuditSource, *, user, filters: AuditFilters, admin: bool) -> models.QuerySet:
    rows = source.table._default_manager.all() if source.is_ledger else source.table.objects.all()
    if not admin:
        rows = _in_programs(rows, source, Program.objects.filter(staff=user))
    if filters.program is not None:
        rows = rows.filter(**{source.program_path: filters.program.pk})
    if filters.object_id is not None:
        rows = rows.filter(**{source.object_field: filters.object_id})
    if filters.member is not None:
        rows = rows.filter(**{source.member_path: filters.member.pk})
    if filters.since is not None:
        rows = rows.filter(**{f"{source.date_field}__gte": filters.since})
    if filters.until is not None:
        rows = rows.filter(**{f"{source.date_field}__lt": filters.until})
    if source.is_ledger:
        if filters.author:
            rows = rows.filter(Q(actor__username=filters.author) | Q(actor_label=filters.author))
    else:
        if filters.change_type:
            rows = rows.filter(history_type=filters.change_type)
        if filters.author:
            rows = rows.filter(
                Q(history_user__username=filters.author)
                | Q(history_user__isnull=True, history_change_reason=filters.author)
            )
    return (
        rows.order_by()
        .annotate(
            audit_at=F(source.date_field),
            audit_key=F(source.key_field),
            audit_model=Value(source.label, output_field=CharField()),
        )
        .values_list("audit_at", "audit_key", "audit_model")
    )


def _applies(source: AuditSource, filters: AuditFilters) -> bool:
    if filters.model and filters.model != source.label:
        return False
    if filters.program is not None and not source.program_path:
        return False
    if filters.member is not None and not source.member_path:
        return False
    # Ledger entries are only ever created.
    return not (source.is_ledger and filters.change_type in ("~", "-"))


def audit_page_keys(
    *, user, filters: AuditFilters, page: int = 1, size: int = PAGE_SIZE, oldest_first: bool = False
) -> list[tuple]:
    """(date, key, label) of one page of the timeline, newest first (or oldest first), plus one
    more row if there is a further page. One query."""
    admin = user_role(user) == Role.ADMIN
    sources = [s for s in visible_sources(user=user) if _applies(s, filters)]
    branches = [_branch(s, user=user, filters=filters, admin=admin) for s in sources]
    if not branches:
        return []
    offset = (page - 1) * size
    ordering = ("audit_at", "audit_key") if oldest_first else ("-audit_at", "-audit_key")

    def branch_order(source: AuditSource) -> tuple[str, ...]:
        # The ledger has no index on posted_at alone, but its ids follow posting order (an
        # entry's posted_at is the ledger's clock when it is inserted), so its newest rows
        # are a backward walk of the primary key instead of a sort of every entry.
        if source.is_ledger:
            return ("id",) if oldest_first else ("-id",)
        return ordering

    if len(branches) == 1:
        return list(branches[0].order_by(*branch_order(sources[0]))[offset : offset + size + 1])
    if connection.features.supports_slicing_ordering_in_compound:
        # Each table gives only its newest rows up to the end of the page (an index walk on
        # its date), so the database sorts at most tables x (offset + size) rows, not every
        # row of every table.
        branches = [
            b.order_by(*branch_order(source))[: offset + size + 1]
            for b, source in zip(branches, sources, strict=True)
        ]
    first, *rest = branches
    return list(first.union(*rest, all=True).order_by(*ordering)[offset : offset + size + 1])


def audit_rows(*, keys: list[tuple]) -> list[AuditRow]:
    """The timeline rows for page keys from `audit_page_keys`, in the same order, each with its
    changes against the version before it. Two queries per model present on the page (one for
    the ledger)."""
    by_label: dict[str, list[int]] = {}
    for _, key, label in keys:
        by_label.setdefault(label, []).append(key)
    sources = audit_sources()
    found: dict[tuple[str, int], AuditRow] = {}
    for label, ids in by_label.items():
        source = sources[label]
        rows = _ledger_rows(source, ids) if source.is_ledger else _history_rows(source, ids)
        found.update({(label, row.key): row for row in rows})
    return [found[(label, key)] for _, key, label in keys if (label, key) in found]


def _ledger_rows(source: AuditSource, ids: list[int]) -> list[AuditRow]:
    entries = LedgerEntry.objects.filter(id__in=ids).select_related("account__member", "actor")
    return [_ledger_row(source, entry) for entry in entries]


def _ledger_row(source: AuditSource, entry: LedgerEntry) -> AuditRow:
    member = entry.account.member
    return AuditRow(
        source=source,
        record=entry,
        date=entry.posted_at,
        change_type="+",
        author=entry.actor.get_username() if entry.actor_id else entry.actor_label,
        reason=entry.reason,
        object_id=entry.id,
        object_repr=f"{entry.get_kind_display()} {entry.points:+,d} points",
        member_number=member.membership_number,
        program_id=entry.program_id,
    )


def _member_number_path(source: AuditSource) -> str | None:
    if source.model is Member:
        return "membership_number"
    return f"{source.member_path}__membership_number" if source.member_path else None


def _previous_key(table) -> Subquery:
    """The history_id of the version just before each row (same object, earlier)."""
    older = table.objects.filter(id=OuterRef("id")).filter(
        Q(history_date__lt=OuterRef("history_date"))
        | Q(history_date=OuterRef("history_date"), history_id__lt=OuterRef("history_id"))
    )
    return Subquery(older.order_by("-history_date", "-history_id").values("history_id")[:1])


def _history_rows(source: AuditSource, ids: list[int], *, with_m2m: bool = False) -> list[AuditRow]:
    table = source.table
    annotations = {"audit_previous": _previous_key(table)}
    number = _member_number_path(source)
    if number:
        annotations["audit_member_number"] = F(number)
    if source.program_path:
        annotations["audit_program_id"] = F(source.program_path)
    records = list(
        table.objects.filter(history_id__in=ids).select_related("history_user").annotate(**annotations)
    )
    previous_keys = [r.audit_previous for r in records if r.audit_previous]
    previous = table.objects.in_bulk(previous_keys) if previous_keys else {}
    return [_history_row(source, record, previous.get(record.audit_previous), with_m2m) for record in records]


def _history_row(source: AuditSource, record, previous, with_m2m: bool) -> AuditRow:
    from loyalty.selectors import FieldChange

    changes = []
    if previous is not None and record.history_type == "~":
        excluded = set(NOISE_FIELDS)
        if not with_m2m:  # m2m diffs cost a query each; the detail page shows them
            excluded |= {f.name for f in record._history_m2m_fields}
        delta = record.diff_against(previous, excluded_fields=excluded)
        for change in delta.changes:
            model_field = source.model._meta.get_field(change.field)
            labels = dict(model_field.flatchoices) if getattr(model_field, "choices", None) else {}
            changes.append(
                FieldChange(
                    field=change.field,
                    label=str(getattr(model_field, "verbose_name", change.field)),
                    old=labels.get(change.old, change.old),
                    new=labels.get(change.new, change.new),
                )
            )
    user = record.history_user
    reason = record.history_change_reason or ""
    return AuditRow(
        source=source,
        record=record,
        date=record.history_date,
        change_type=record.history_type,
        # A person when there was one; otherwise the job, command, API key or import label.
        author=user.get_username() if user is not None else (reason or "system"),
        reason=reason if user is not None else "",
        object_id=record.id,
        object_repr=f"{source.name} #{record.id}",
        member_number=getattr(record, "audit_member_number", None),
        program_id=getattr(record, "audit_program_id", None),
        changes=changes,
        previous=previous,
    )


def audit_row_get(*, user, label: str, key: int) -> AuditRow:
    """One change with its full diff (many-to-many fields too), or 404 outside the user's scope."""
    source = {s.label: s for s in visible_sources(user=user)}.get(label)
    if source is None:
        raise Http404("No such history.")
    admin = user_role(user) == Role.ADMIN
    rows = source.table._default_manager.all() if source.is_ledger else source.table.objects.all()
    if not admin:
        rows = _in_programs(rows, source, Program.objects.filter(staff=user))
    if not rows.filter(pk=key).exists():
        raise Http404("No such history.")
    if source.is_ledger:
        return _ledger_rows(source, [key])[0]
    return _history_rows(source, [key], with_m2m=True)[0]


def record_values(row: AuditRow) -> list[tuple[str, object]]:
    """(label, value) of every tracked field of a created or deleted version (raw ids for links)."""
    values = []
    for f in row.record.tracked_fields:
        model_field = row.source.model._meta.get_field(f.name)
        value = getattr(row.record, f.attname)
        labels = dict(model_field.flatchoices) if getattr(model_field, "choices", None) else {}
        values.append((str(getattr(model_field, "verbose_name", f.name)), labels.get(value, value)))
    return values
