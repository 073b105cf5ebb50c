"""The agent's member screens: access, search, the member page, ledger, explain, balance on date, adjust."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry
from loyalty.services import member_create

JOB = Actor.job("test")

MEMBER_PAGES = [
    "loyalty:member_detail",
    "loyalty:member_ledger",
    "loyalty:member_explain",
    "loyalty:member_balance_on",
    "loyalty:member_history",
]


def url(name, member, **query):
    path = reverse(name, kwargs={"number": member.membership_number})
    if query:
        path += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return path


def earn(account, points, key, **kwargs):
    kwargs.setdefault("reason", "Purchase")
    return ledger.credit(
        account=account, points=points, actor=JOB, idempotency_key=key, source="api", **kwargs
    )


def redeem(account, points, key, **kwargs):
    return ledger.debit(
        account=account,
        points=points,
        reason="Reward",
        actor=JOB,
        idempotency_key=key,
        source="api",
        **kwargs,
    )


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.content.decode())))


# --- Access --------------------------------------------------------------------


@pytest.mark.parametrize("name", MEMBER_PAGES)
def test_it_shows_every_member_page_to_an_agent_of_the_program(login, agent_a, member_a, name):
    assert login(agent_a).get(url(name, member_a)).status_code == 200


@pytest.mark.parametrize("name", MEMBER_PAGES)
def test_it_hides_members_of_other_programs(login, agent_b, member_a, name):
    assert login(agent_b).get(url(name, member_a)).status_code == 404


@pytest.mark.parametrize("name", [*MEMBER_PAGES, "loyalty:member_adjust"])
def test_it_sends_anonymous_users_to_login(client, member_a, name):
    response = client.get(url(name, member_a))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", [*MEMBER_PAGES, "loyalty:member_adjust"])
def test_it_forbids_members(login, member_a, name):
    assert login(member_a.user).get(url(name, member_a)).status_code == 403


def test_search_needs_a_staff_role(client, login, member_a):
    assert client.get(reverse("loyalty:member_search")).status_code == 302
    assert login(member_a.user).get(reverse("loyalty:member_search")).status_code == 403


def test_it_404s_an_unknown_number(login, agent_a):
    response = login(agent_a).get(reverse("loyalty:member_detail", kwargs={"number": "0000000000"}))
    assert response.status_code == 404


def test_the_home_page_sends_agents_to_the_search(login, agent_a):
    response = login(agent_a).get(reverse("home"))
    assert response["Location"] == reverse("loyalty:member_search")


# --- Member search ---------------------------------------------------------------


@pytest.fixture
def dana(program_a):
    return member_create(
        program=program_a,
        first_name="Dana",
        last_name="Scully",
        email="dana.scully@example.com",
        phone="+33 6 12 34 56 78",
    )


def search(client, **query):
    response = client.get(reverse("loyalty:member_search"), query)
    assert response.status_code == 200
    return [row.record for row in response.context["table"].page.object_list]


def test_search_lists_only_the_agents_programs(login, agent_a, member_a, member_b, member_of_b):
    found = search(login(agent_a))
    assert set(found) == {member_a, member_b}


@pytest.mark.parametrize(
    "query",
    [
        "scully",
        "  DANA  ",
        "dana scu",
        "Dana.Scully@Example.com",
        "06 12 34 56 78",
        "+33612345678",
        "12-34-56",
    ],
)
def test_search_finds_a_member_by_name_email_or_phone(login, agent_a, dana, member_a, query):
    assert search(login(agent_a), q=query) == [dana]


def test_search_finds_a_member_by_number(login, agent_a, dana, member_a):
    assert search(login(agent_a), q=f" {dana.membership_number} ") == [dana]


def test_search_does_not_find_other_programs_members(login, agent_a, member_of_b):
    assert search(login(agent_a), q="carol") == []
    assert search(login(agent_a), q=member_of_b.membership_number) == []


def test_search_refuses_a_program_the_agent_does_not_work_on(
    login, agent_a, program_b, member_a, member_of_b
):
    assert search(login(agent_a), program=program_b.pk) == []


def test_search_filters_by_status(login, agent_a, member_a, member_b):
    member_b.status = "suspended"
    member_b.save()
    assert search(login(agent_a), status="suspended") == [member_b]


def test_search_is_sortable(login, agent_a, member_a, member_b):
    earn(member_b.account, 50, "b1")
    assert search(login(agent_a), sort="-balance") == [member_b, member_a]
    assert search(login(agent_a), sort="name") == [member_a, member_b]


def test_search_exports_csv_without_the_button_column(login, agent_a, member_a, member_b, member_of_b):
    earn(member_a.account, 70, "a1")
    response = login(agent_a).get(reverse("loyalty:member_search"), {"q": "alice", "_export": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    header, *rows = csv_rows(response)
    assert header == ["Number", "Name", "Email", "Phone", "Program", "Status", "Balance", "Pending"]
    assert rows == [
        [member_a.membership_number, "Alice Member", member_a.email, "", "Program A", "Active", "70", "0"]
    ]


@pytest.mark.parametrize("export", ["xlsx", "ods", "yaml", "pdf"])
def test_other_export_formats_just_show_the_page(login, agent_a, member_a, export):
    client = login(agent_a)
    for path in (reverse("loyalty:member_search"), url("loyalty:member_ledger", member_a)):
        response = client.get(path, {"_export": export})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")


def test_search_paginates(login, agent_a, program_a):
    for i in range(30):
        member_create(program=program_a, first_name=f"M{i:02d}", last_name="Page")
    client = login(agent_a)
    assert len(search(client)) == 25
    assert len(search(client, page=2)) == 5


def test_search_runs_the_same_queries_for_3_or_30_members(
    login, agent_a, program_a, django_assert_num_queries
):
    client = login(agent_a)
    for i in range(3):
        member_create(program=program_a, first_name=f"M{i}", last_name="Few", phone="0102030405")
    with CaptureQueriesContext(connection) as few:
        assert client.get(reverse("loyalty:member_search"), {"q": "few"}).status_code == 200
    for i in range(27):
        member_create(program=program_a, first_name=f"N{i}", last_name="Few", phone="0102030405")
    with django_assert_num_queries(len(few.captured_queries)):
        response = client.get(reverse("loyalty:member_search"), {"q": "few"})
    assert len(response.context["table"].page.object_list) == 25


# --- Member page -------------------------------------------------------------------


def test_member_page_shows_balances_and_forecast(login, agent_a, member_a, program_a):
    account = member_a.account
    now = timezone.now()
    earn(account, 100, "soon", expires_at=now + timedelta(days=20))
    earn(account, 40, "later", expires_at=now + timedelta(days=75))
    program_a.pending_days = 14
    program_a.save()
    earn(account, 25, "pending")  # waits 14 days
    response = login(agent_a).get(url("loyalty:member_detail", member_a))
    assert response.status_code == 200
    overview = response.context["overview"]
    assert overview.expiring == {30: 100, 60: 100, 90: 140}
    assert [lot.points for lot in overview.pending_lots] == [25]
    body = response.content.decode()
    assert "Alice Member" in body
    assert "Program A" in body
    assert reverse("loyalty:member_explain", kwargs={"number": member_a.membership_number}) in body
    assert reverse("loyalty:member_history", kwargs={"number": member_a.membership_number}) in body


def test_member_page_shows_the_latest_ten_entries_with_reason_and_breakdown(login, agent_a, member_a):
    for i in range(12):
        earn(
            member_a.account,
            10 + i,
            f"e{i}",
            reason=f"Purchase number {i}",
            breakdown={"base_points": 10 + i},
        )
    response = login(agent_a).get(url("loyalty:member_detail", member_a))
    body = response.content.decode()
    assert len(response.context["overview"].recent_entries) == 10
    assert "Purchase number 11" in body
    assert "Purchase number 1<" not in body and "Purchase number 0" not in body
    assert "base points: 21" in body


def test_member_page_offers_the_adjustment_form_to_supervisors_only(login, agent_a, supervisor, member_a):
    adjust_url = url("loyalty:member_adjust", member_a)
    assert adjust_url not in login(agent_a).get(url("loyalty:member_detail", member_a)).content.decode()
    body = login(supervisor).get(url("loyalty:member_detail", member_a)).content.decode()
    assert f'action="{adjust_url}"' in body
    assert 'name="idempotency_key"' in body


def _member_page_queries(client, member):
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url("loyalty:member_detail", member)).status_code == 200
    return len(captured.captured_queries)


def test_member_page_costs_the_same_for_10_or_200_entries(login, agent_a, member_a, member_b):
    for i in range(10):
        earn(member_a.account, 10, f"a{i}")
    for i in range(100):
        earn(member_b.account, 10, f"b{i}", expires_at=timezone.now() + timedelta(days=i))
        redeem(member_b.account, 5, f"r{i}")
    assert member_b.account.entries.count() == 200
    client = login(agent_a)
    _member_page_queries(client, member_a)  # warm the content type and session caches
    assert _member_page_queries(client, member_a) == _member_page_queries(client, member_b)


# --- Full ledger ----------------------------------------------------------------------


@pytest.fixture
def history(member_a):
    """Member A's ledger: two purchases, a redemption and its refund."""
    account = member_a.account
    earn(account, 100, "p1", reference="ORDER-1", breakdown={"base": 100})
    earn(account, 50, "p2", reference="ORDER-2")
    spend = redeem(account, 30, "r1", reference="REWARD-1")
    ledger.refund(entry=spend.entry, reason="Reward cancelled", actor=JOB, idempotency_key="f1", source="api")
    return account


def ledger_rows(client, member, **query):
    response = client.get(url("loyalty:member_ledger", member), query)
    assert response.status_code == 200
    return [row.record for row in response.context["table"].page.object_list]


def test_ledger_lists_entries_newest_first(login, agent_a, member_a, history):
    kinds = [entry.kind for entry in ledger_rows(login(agent_a), member_a)]
    assert kinds == ["refund", "redeem", "earn", "earn"]


def test_ledger_filters_by_kind_source_and_reference(login, agent_a, member_a, history):
    client = login(agent_a)
    assert [e.kind for e in ledger_rows(client, member_a, kind="redeem")] == ["redeem"]
    assert [e.reference for e in ledger_rows(client, member_a, reference="order")] == ["ORDER-2", "ORDER-1"]
    assert ledger_rows(client, member_a, source="agent") == []


def test_ledger_filters_by_day_in_the_programs_time_zone(login, agent_a, member_a):
    account = member_a.account
    # 23:30 in Paris on 10 March, then 00:30 in Paris on 11 March.
    earn(account, 100, "late", now=datetime(2025, 3, 10, 22, 30, tzinfo=UTC))
    earn(account, 50, "early", now=datetime(2025, 3, 10, 23, 30, tzinfo=UTC))
    client = login(agent_a)
    day = ledger_rows(client, member_a, posted_from="2025-03-10", posted_to="2025-03-10")
    assert [e.points for e in day] == [100]
    assert [e.points for e in ledger_rows(client, member_a, posted_from="2025-03-11")] == [50]


def test_ledger_links_a_reversal_to_the_entry_it_reverses(login, agent_a, member_a, history):
    refund = history.entries.get(kind="refund")
    client = login(agent_a)
    body = client.get(url("loyalty:member_ledger", member_a)).content.decode()
    assert f'?entry={refund.reverses_id}">#{refund.reverses_id}</a>' in body
    assert [e.pk for e in ledger_rows(client, member_a, entry=refund.reverses_id)] == [refund.reverses_id]


def test_ledger_shows_who_why_and_the_breakdown(login, agent_a, member_a, history):
    body = login(agent_a).get(url("loyalty:member_ledger", member_a)).content.decode()
    assert "job:test" in body
    assert "Reward cancelled" in body
    assert "base: 100" in body


def test_ledger_is_sortable(login, agent_a, member_a, history):
    points = [e.points for e in ledger_rows(login(agent_a), member_a, sort="points")]
    assert points == sorted(points)


def test_ledger_exports_csv(login, agent_a, member_a, member_b, history):
    earn(member_b.account, 999, "other")
    response = login(agent_a).get(url("loyalty:member_ledger", member_a), {"_export": "csv", "kind": "earn"})
    assert response["Content-Type"].startswith("text/csv")
    assert member_a.membership_number in response["Content-Disposition"]
    header, *rows = csv_rows(response)
    assert header[:5] == ["#", "Posted", "Occurred", "Kind", "Points"]
    assert [(row[3], row[4], row[8]) for row in rows] == [
        ("Earned", "50", "ORDER-2"),
        ("Earned", "100", "ORDER-1"),
    ]
    assert rows[1][header.index("Breakdown")] == '{"base": 100}'
    posted = datetime.fromisoformat(rows[1][header.index("Posted")])
    assert posted.utcoffset() in (timedelta(hours=1), timedelta(hours=2))  # Paris time


def test_ledger_paginates(login, agent_a, member_a):
    for i in range(55):
        earn(member_a.account, 1, f"k{i}")
    client = login(agent_a)
    assert len(ledger_rows(client, member_a)) == 50
    assert len(ledger_rows(client, member_a, page=2)) == 5


def test_ledger_ignores_an_invalid_filter_without_error(login, agent_a, member_a, history):
    response = login(agent_a).get(url("loyalty:member_ledger", member_a), {"posted_from": "yesterday"})
    assert response.status_code == 200


# --- Explain -------------------------------------------------------------------------


def test_explain_page_adds_up(login, agent_a, member_a, history):
    response = login(agent_a).get(url("loyalty:member_explain", member_a))
    explanation = response.context["explanation"]
    assert explanation.adds_up
    assert explanation.available_total == 150
    body = response.content.decode()
    assert "Adds up" in body
    assert "given back" in body  # the refund put points back


# --- Balance on date ---------------------------------------------------------------


def test_balance_on_a_date_uses_the_end_of_that_day_in_the_programs_time_zone(login, agent_a, member_a):
    account = member_a.account
    earn(account, 100, "late", now=datetime(2025, 3, 10, 22, 30, tzinfo=UTC))  # 23:30 Paris
    earn(account, 50, "early", now=datetime(2025, 3, 10, 23, 30, tzinfo=UTC))  # 00:30 Paris, next day
    response = login(agent_a).get(url("loyalty:member_balance_on", member_a, at="2025-03-10"))
    assert response.status_code == 200
    assert response.context["snapshot"].balance == 100
    assert [e.points for e in response.context["day_entries"]] == [100]
    body = response.content.decode()
    assert "2025-03-10 23:59:59 Europe/Paris" in body
    assert "2025-03-10 22:59:59 UTC" in body


def test_balance_on_a_date_and_time(login, agent_a, member_a):
    account = member_a.account
    earn(account, 100, "morning", now=datetime(2025, 3, 10, 8, 0, tzinfo=UTC))  # 09:00 Paris
    earn(account, 50, "evening", now=datetime(2025, 3, 10, 17, 0, tzinfo=UTC))  # 18:00 Paris
    response = login(agent_a).get(url("loyalty:member_balance_on", member_a, at="2025-03-10T12:00"))
    assert response.context["snapshot"].balance == 100
    assert len(response.context["day_entries"]) == 2
    assert "after this moment" in response.content.decode()


def test_balance_on_a_date_before_any_entry_is_zero(login, agent_a, member_a, history):
    response = login(agent_a).get(url("loyalty:member_balance_on", member_a, at="2020-01-01"))
    assert response.context["snapshot"].balance == 0


@pytest.mark.parametrize(
    "bad", ["tomorrow", "2025-02-30", "9999-12-31", "2025-13-01T10:00", "1999-12-31", ""]
)
def test_balance_on_a_bad_date_is_a_form_error(login, agent_a, member_a, bad):
    response = login(agent_a).get(url("loyalty:member_balance_on", member_a, at=bad))
    assert response.status_code == 400
    assert response.context["form"].errors["at"]


def test_balance_on_date_shows_the_form_first(login, agent_a, member_a):
    response = login(agent_a).get(url("loyalty:member_balance_on", member_a))
    assert response.status_code == 200
    assert "snapshot" not in response.context


# --- Member history --------------------------------------------------------------------


def test_history_shows_who_changed_what(login, agent_a, supervisor, member_a):
    client = login(supervisor)
    member_a.email = "alice.new@example.com"
    member_a._history_user = supervisor
    member_a.save()
    response = login(agent_a).get(url("loyalty:member_history", member_a))
    body = response.content.decode()
    first = response.context["rows"][0]
    assert first.who == "supervisor"
    assert [(c.field, c.old, c.new) for c in first.changes] == [
        ("email", "member-a@example.com", "alice.new@example.com")
    ]
    assert "alice.new@example.com" in body
    assert "Created" in body
    assert client  # the supervisor's session is irrelevant here


def test_history_pages_diff_across_the_page_boundary(login, agent_a, member_a):
    for i in range(30):
        member_a.phone = f"0100000{i:03d}"
        member_a.save()
    client = login(agent_a)
    first = client.get(url("loyalty:member_history", member_a)).context["rows"]
    second = client.get(url("loyalty:member_history", member_a, page=2)).context["rows"]
    assert len(first) == 25 and len(second) == 6
    assert [(c.old, c.new) for c in first[-1].changes] == [("0100000004", "0100000005")]
    assert second[-1].record.history_type == "+"


# --- Manual adjustment --------------------------------------------------------------------


def adjustment(points=50, reason="Goodwill for a late delivery", key=None):
    return {"points": points, "reason": reason, "idempotency_key": key or str(uuid.uuid4())}


def test_agents_cannot_adjust_yet(login, agent_a, member_a):
    client = login(agent_a)
    assert client.get(url("loyalty:member_adjust", member_a)).status_code == 403
    assert client.post(url("loyalty:member_adjust", member_a), adjustment()).status_code == 403
    assert not LedgerEntry.objects.exists()


def test_a_supervisor_cannot_adjust_another_programs_member(login, supervisor, member_of_b):
    assert login(supervisor).post(url("loyalty:member_adjust", member_of_b), adjustment()).status_code == 404


def test_the_adjustment_form_carries_a_fresh_key(login, supervisor, member_a):
    client = login(supervisor)
    first = client.get(url("loyalty:member_adjust", member_a)).context["form"]["idempotency_key"].value()
    second = client.get(url("loyalty:member_adjust", member_a)).context["form"]["idempotency_key"].value()
    assert uuid.UUID(str(first)) != uuid.UUID(str(second))


def test_a_supervisor_adjusts_once_on_a_double_submit(login, supervisor, member_a):
    client = login(supervisor)
    data = adjustment(points=75)
    first = client.post(url("loyalty:member_adjust", member_a), data)
    second = client.post(url("loyalty:member_adjust", member_a), data, follow=True)
    assert first.status_code == 302
    assert first["Location"] == member_a.get_absolute_url()
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 75
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.source, entry.actor, entry.actor_label) == (
        "adjust",
        "agent",
        supervisor,
        "user:supervisor",
    )
    assert entry.reason == "Goodwill for a late delivery"
    assert "already posted" in [str(m) for m in second.context["messages"]][-1]
    assert ledger.reconcile() == []


def test_a_successful_adjustment_says_so(login, supervisor, member_a):
    response = login(supervisor).post(
        url("loyalty:member_adjust", member_a), adjustment(points=20), follow=True
    )
    assert "Adjustment of +20 points posted" in response.content.decode()


def test_a_supervisor_removes_points(login, supervisor, member_a):
    earn(member_a.account, 100, "p1")
    login(supervisor).post(url("loyalty:member_adjust", member_a), adjustment(points=-40))
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 60


def test_removing_more_than_the_balance_is_a_form_error(login, supervisor, member_a):
    earn(member_a.account, 10, "p1")
    response = login(supervisor).post(url("loyalty:member_adjust", member_a), adjustment(points=-50))
    assert response.status_code == 409
    assert "Only 10 points are available" in response.context["form"].errors["points"][0]
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 10


def test_reusing_a_key_with_other_values_posts_nothing_more(login, supervisor, member_a):
    client = login(supervisor)
    key = str(uuid.uuid4())
    client.post(url("loyalty:member_adjust", member_a), adjustment(points=10, key=key))
    response = client.post(url("loyalty:member_adjust", member_a), adjustment(points=99, key=key))
    assert response.status_code == 409
    form = response.context["form"]
    assert "already been submitted" in form.non_field_errors()[0]
    assert form["idempotency_key"].value() != key
    member_a.account.refresh_from_db()
    assert member_a.account.balance == 10


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"points": 0}, "points"),
        ({"points": 1_000_001}, "points"),
        ({"points": "ten"}, "points"),
        ({"reason": "   short  "}, "reason"),
        ({"reason": ""}, "reason"),
        ({"idempotency_key": "not-a-uuid"}, "idempotency_key"),
    ],
)
def test_a_bad_adjustment_is_a_form_error(login, supervisor, member_a, data, field):
    response = login(supervisor).post(url("loyalty:member_adjust", member_a), {**adjustment(), **data})
    assert response.status_code == 400
    assert field in response.context["form"].errors
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("loyalty:member_search", {"page": "abc"}),
        ("loyalty:member_search", {"page": "999"}),
        ("loyalty:member_search", {"sort": "no_such_column"}),
        ("loyalty:member_search", {"sort": "actions"}),
        ("loyalty:member_search", {"program": "abc", "status": "nope"}),
        ("loyalty:member_search", {"q": "9" * 200}),
        ("loyalty:member_ledger", {"entry": "9" * 30}),
        ("loyalty:member_ledger", {"entry": "-1"}),
        ("loyalty:member_ledger", {"entry": "1.5"}),
        ("loyalty:member_ledger", {"posted_from": "9999-12-31", "posted_to": "9999-12-31"}),
        ("loyalty:member_ledger", {"posted_from": "0001-01-01"}),
        ("loyalty:member_ledger", {"sort": "breakdown", "page": "-3"}),
        ("loyalty:member_history", {"page": "zz"}),
    ],
)
def test_odd_queries_never_fail(login, agent_a, member_a, history, name, query):
    path = reverse(name) if name == "loyalty:member_search" else url(name, member_a)
    assert login(agent_a).get(path, query).status_code in (200, 404)
