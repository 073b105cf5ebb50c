"""The audit browser: one timeline of every tracked change and ledger entry, with authors, scoped
to the supervisor's programs, filtered, diffed, exported, and paged in a constant number of queries."""

import csv
import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from agents.supervisor import selectors
from disputes.models import Dispute
from loyalty import ledger
from loyalty.api.services import api_key_create
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry
from loyalty.services import member_create
from loyalty.tasks import review_tiers
from tests.loyalty.factories import TierFactory
from tests.supervisor.conftest import at

AUDIT = reverse("supervisor:audit_list")


def rows_of(response) -> list:
    return response.context["rows"]


def authors(response) -> dict[str, list[str]]:
    found = {}
    for row in rows_of(response):
        found.setdefault(row.author, []).append(row.source.label)
    return found


@pytest.fixture
def admin_change(login, admin_user, member_a):
    """The admin renames member A through the Django admin's change form."""
    client = login(admin_user)
    response = client.post(
        reverse("admin:loyalty_member_change", args=[member_a.pk]),
        {
            "membership_number": member_a.membership_number,
            "first_name": "Alicia",
            "last_name": member_a.last_name,
            "email": member_a.email,
            "phone": "",
            "birth_date": "",
            "joined_on": "2025-01-01",
            "status": "active",
            "user": member_a.user_id,
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    client.logout()
    member_a.refresh_from_db()
    assert member_a.first_name == "Alicia"
    return member_a


@pytest.fixture
def tiers(program_a):
    TierFactory(program=program_a, name="Bronze", rank=1, threshold=0)
    TierFactory(program=program_a, name="Silver", rank=2, threshold=100)


def test_it_shows_changes_by_the_admin_a_job_a_command_and_the_api_each_with_its_author(
    login, supervisor, admin_change, tiers, member_a, member_b, program_a
):
    # A job: the Celery task (run eagerly, through Celery's signals) puts members A and B on Bronze.
    review_tiers.delay(program_a.id)
    # The integration API: a client system changes member B's phone with its key "pos-terminal".
    _key, raw = api_key_create(program=program_a, name="pos-terminal")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    patched = api.patch(
        f"/api/v1/members/{member_b.membership_number}/",
        {"phone": "+33 6 00 00 00 02"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="audit-1",
    )
    assert patched.status_code == 200, patched.content

    response = login(supervisor).get(AUDIT, {"model": "loyalty.member"})
    assert response.status_code == 200
    by_author = {(row.author, row.object_id): row for row in rows_of(response)}
    admin_row = by_author[("admin", member_a.pk)]
    assert ("first_name", "Alice", "Alicia") in [(c.field, c.old, c.new) for c in admin_row.changes]
    job_row = by_author[("job:loyalty.tasks.review_tiers", member_a.pk)]
    assert [c.field for c in job_row.changes] == ["tier"]
    api_row = by_author[("api:pos-terminal", member_b.pk)]
    assert [(c.field, c.new) for c in api_row.changes] == [("phone", "+33 6 00 00 00 02")]
    page = response.content.decode()
    for author in ("admin", "job:loyalty.tasks.review_tiers", "api:pos-terminal"):
        assert f"<td>{author}" in page


def test_a_command_is_the_author_of_its_changes(login, supervisor, tiers, member_a):
    call_command("review_tiers", verbosity=0)
    response = login(supervisor).get(AUDIT, {"author": "command:review_tiers"})
    assert [(row.object_id, [c.field for c in row.changes]) for row in rows_of(response)] == [
        (member_a.pk, ["tier"])
    ]


def test_ledger_entries_are_in_the_timeline_with_their_actor(login, supervisor, member_a, post):
    post("earn", member_a.account, 100, now=at(2025, 1, 10))
    post("adjust", member_a.account, -20, now=at(2025, 1, 11), actor=Actor.of_user(supervisor))
    response = login(supervisor).get(AUDIT, {"model": selectors.LEDGER})
    rows = rows_of(response)
    assert [(row.author, row.change_type, row.record.points) for row in rows] == [
        ("supervisor", "+", -20),
        ("job:tests", "+", 100),
    ]
    assert rows[0].member_url == reverse("loyalty:member_detail", args=[member_a.membership_number])


def test_models_of_other_apps_appear_without_being_listed(login, supervisor, member_a, program_a):
    Dispute.objects.create(
        program=program_a,
        member=member_a,
        category="other",
        subject="Help",
        description="Please",
        created_at=at(2025, 1, 1),
        updated_at=at(2025, 1, 1),
        first_response_due=at(2025, 1, 2),
        resolution_due=at(2025, 1, 5),
    )
    labels = {s.label for s in selectors.visible_sources(user=supervisor)}
    assert {"disputes.dispute", "loyalty.member", "loyalty.reward", selectors.LEDGER} <= labels
    response = login(supervisor).get(AUDIT, {"model": "disputes.dispute"})
    [row] = rows_of(response)
    assert row.member_number == member_a.membership_number
    assert row.change_type == "+"


def test_a_supervisor_sees_only_their_programs(login, supervisor, admin_user, member_a, member_of_b, post):
    post("earn", member_of_b.account, 5, now=at(2025, 1, 1))
    post("earn", member_a.account, 7, now=at(2025, 1, 1))
    mine = rows_of(login(supervisor).get(AUDIT))
    assert {row.program_id for row in mine} == {member_a.program_id}
    assert member_of_b.membership_number not in {row.member_number for row in mine}
    everything = rows_of(login(admin_user).get(AUDIT))
    assert member_of_b.membership_number in {row.member_number for row in everything}


def test_models_without_a_program_link_are_admin_only(supervisor, admin_user):
    unlinked = [s for s in selectors.audit_sources().values() if s.program_path is None]
    visible = {s.label for s in selectors.visible_sources(user=supervisor)}
    assert all(s.label not in visible for s in unlinked)
    assert {s.label for s in unlinked} <= {s.label for s in selectors.visible_sources(user=admin_user)}


def test_program_paths_follow_program_member_or_one_hop(supervisor):
    sources = selectors.audit_sources()
    assert sources["loyalty.program"].program_path == "id"
    assert sources["loyalty.member"].program_path == "program"
    assert sources["disputes.comment"].program_path == "dispute__program"
    assert sources["disputes.comment"].member_path == "dispute__member"


def test_the_diff_page_shows_before_and_after_and_links(login, supervisor, admin_change, member_a):
    record = member_a.history.filter(history_type="~").latest("history_date")
    url = reverse("supervisor:audit_detail", args=["loyalty.member", record.history_id])
    response = login(supervisor).get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert '<th scope="row">First name</th><td>Alice</td><td>Alicia</td>' in page
    assert reverse("loyalty:member_detail", args=[member_a.membership_number]) in page
    assert "by <strong>admin</strong>" in page


def test_the_diff_page_of_another_programs_change_is_a_404(login, supervisor, member_of_b, post):
    record = member_of_b.history.latest("history_date")
    entry = post("earn", member_of_b.account, 5, now=at(2025, 1, 1))
    client = login(supervisor)
    assert (
        client.get(reverse("supervisor:audit_detail", args=["loyalty.member", record.history_id])).status_code
        == 404
    )
    assert (
        client.get(reverse("supervisor:audit_detail", args=[selectors.LEDGER, entry.id])).status_code == 404
    )
    assert client.get(reverse("supervisor:audit_detail", args=["no.such", 1])).status_code == 404


def test_a_created_record_and_a_ledger_entry_have_detail_pages(login, supervisor, member_a, post):
    client = login(supervisor)
    created = member_a.history.earliest("history_date")
    page = client.get(reverse("supervisor:audit_detail", args=["loyalty.member", created.history_id]))
    assert page.status_code == 200 and "Created with" in page.content.decode()
    entry = post("earn", member_a.account, 5, now=at(2025, 1, 1))
    page = client.get(reverse("supervisor:audit_detail", args=[selectors.LEDGER, entry.id]))
    assert page.status_code == 200 and "job:tests" in page.content.decode()


def test_filters(login, supervisor, admin_change, member_a, member_b, post):
    post("earn", member_b.account, 5, now=at(2025, 1, 1))
    client = login(supervisor)

    def keys(**params):
        return [
            (row.source.label, row.object_id, row.change_type) for row in rows_of(client.get(AUDIT, params))
        ]

    assert keys(model="loyalty.member", object_id=member_a.pk, change_type="~") == [
        ("loyalty.member", member_a.pk, "~")
    ]
    assert all(obj == member_a.pk for _, obj, _ in keys(model="loyalty.member", object_id=member_a.pk))
    assert keys(author="admin") == [("loyalty.member", member_a.pk, "~")]
    by_member = keys(member=member_b.membership_number)
    assert ("loyalty.ledgerentry", member_b.account.entries.get().id, "+") in by_member
    assert all(label != "loyalty.member" or obj == member_b.pk for label, obj, _ in by_member)
    assert keys(since="2025-01-01", until="2025-01-01") == [
        ("loyalty.ledgerentry", member_b.account.entries.get().id, "+")
    ]
    assert keys(change_type="-") == []


def test_bad_filters_are_form_errors_not_500s(login, supervisor, program_b):
    client = login(supervisor)
    for params in (
        {"program": program_b.pk},  # not theirs
        {"object_id": 3},  # without a model
        {"since": "2025-02-01", "until": "2025-01-01"},
        {"since": "not a date"},
        {"model": "auth.user"},
        {"member": "0000"},
    ):
        response = client.get(AUDIT, params)
        assert response.status_code == 400, params
        assert response.context["form"].errors


def test_csv_export(login, supervisor, admin_change):
    response = login(supervisor).get(AUDIT, {"_export": "csv", "author": "admin"})
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["When", "What", "Object id", "Member", "Change", "Author", "Reason", "Changes"]
    assert rows[1][1:6] == ["member", str(admin_change.pk), admin_change.membership_number, "~", "admin"]
    assert "First name: Alice -> Alicia" in rows[1][7]


def _grow(program, *, n: int, start: int):
    for i in range(start, start + n):
        member = member_create(
            program=program, first_name=f"M{i}", last_name="Load", email=f"load{i}@example.com"
        )
        ledger.credit(
            account=member.account,
            points=10,
            reason="Purchase",
            actor=Actor.job("load"),
            idempotency_key=f"load-{i}",
            source=LedgerEntry.Source.API,
        )
        member.phone = f"+3360000{i:04d}"
        member.save()


def test_the_timeline_pages_in_a_constant_number_of_queries(login, supervisor, program_a):
    client = login(supervisor)
    # 30 members: a full first page (of members and ledger entries, as with 90 members).
    _grow(program_a, n=30, start=0)
    client.get(AUDIT)  # warm caches (content types, sessions)
    with CaptureQueriesContext(connection) as small:
        assert client.get(AUDIT).status_code == 200
    _grow(program_a, n=60, start=100)
    with CaptureQueriesContext(connection) as big:
        response = client.get(AUDIT)
    assert len(rows_of(response)) == selectors.PAGE_SIZE and response.context["has_next"]
    assert len(big) == len(small)
    with CaptureQueriesContext(connection) as second:
        response = client.get(AUDIT, {"page": 2})
    assert len(second) == len(small) and rows_of(response)


def test_pages_do_not_repeat_or_skip_rows(supervisor, program_a):
    _grow(program_a, n=30, start=0)
    filters = selectors.AuditFilters()
    everything = selectors.audit_page_keys(user=supervisor, filters=filters, size=1000)
    paged = []
    for page in range(1, 10):
        keys = selectors.audit_page_keys(user=supervisor, filters=filters, page=page, size=20)
        paged += keys[:20]
        if len(keys) <= 20:
            break
    assert [(k[1], k[2]) for k in paged] == [(k[1], k[2]) for k in everything]
    oldest = selectors.audit_page_keys(user=supervisor, filters=filters, size=1000, oldest_first=True)
    assert [(k[1], k[2]) for k in oldest] == [(k[1], k[2]) for k in reversed(everything)]
