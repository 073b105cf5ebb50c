"""The shortfall queue: points a return could not take back, and an agent closing them with a note."""

import csv
import io
import itertools

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loyalty import ledger
from loyalty.earning import activity_post, purchase_return
from loyalty.errors import ApplicationError
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, PointsAccount, PointsShortfall
from loyalty.shortfalls import shortfall_resolve
from tests.loyalty.factories import EarningRuleFactory

JOB = Actor.job("test")
Source = LedgerEntry.Source
Status = PointsShortfall.Status

_references = itertools.count(1)


def flag_shortfall(member, *, spent=80) -> PointsShortfall:
    """The real way a shortfall happens: buy for 100 (100 points), spend some, return the whole purchase."""
    n = next(_references)
    activity_post(
        member=member, code="purchase", amount="100", reference=f"order-{n}", source=Source.API, actor=JOB
    )
    ledger.debit(
        account=member.account,
        points=spent,
        reason="Reward",
        actor=JOB,
        idempotency_key=f"spend-{n}",
        source=Source.PORTAL,
    )
    result = purchase_return(
        member=member,
        original_reference=f"order-{n}",
        amount="100",
        reference=f"return-{n}",
        source=Source.API,
        actor=JOB,
    )
    assert result.shortfall == spent
    return PointsShortfall.objects.get(reference=f"return-{n}")


@pytest.fixture(autouse=True)
def purchases_earn(program_a, program_b):
    EarningRuleFactory(program=program_a)
    EarningRuleFactory(program=program_b)


@pytest.fixture
def shortfall(member_a):
    return flag_shortfall(member_a)


def list_url():
    return reverse("loyalty:shortfall_list")


def detail_url(shortfall):
    return reverse("loyalty:shortfall_detail", kwargs={"pk": shortfall.pk})


def resolve_url(shortfall):
    return reverse("loyalty:shortfall_resolve", kwargs={"pk": shortfall.pk})


def rows(client, **query):
    response = client.get(list_url(), query)
    assert response.status_code == 200
    return [row.record for row in response.context["table"].page.object_list]


def fresh(shortfall) -> PointsShortfall:
    return PointsShortfall.objects.get(pk=shortfall.pk)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- Access ----------------------------------------------------------------------------


def test_the_queue_and_the_page_work_for_an_agent_of_the_program(login, agent_a, shortfall):
    client = login(agent_a)
    assert rows(client) == [shortfall]
    assert client.get(detail_url(shortfall)).status_code == 200


def test_another_programs_agent_sees_nothing_and_cannot_resolve(login, agent_b, shortfall):
    client = login(agent_b)
    assert rows(client) == []
    assert client.get(detail_url(shortfall)).status_code == 404
    assert client.post(resolve_url(shortfall), {"note": "Written off"}).status_code == 404
    assert fresh(shortfall).status == Status.OPEN


def test_anonymous_users_go_to_login(client, shortfall):
    for response in (
        client.get(list_url()),
        client.get(detail_url(shortfall)),
        client.post(resolve_url(shortfall), {"note": "Written off"}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert fresh(shortfall).status == Status.OPEN


def test_members_are_forbidden(login, member_a, shortfall):
    client = login(member_a.user)
    assert client.get(list_url()).status_code == 403
    assert client.get(detail_url(shortfall)).status_code == 403
    assert client.post(resolve_url(shortfall), {"note": "Written off"}).status_code == 403
    assert fresh(shortfall).status == Status.OPEN


def test_the_staff_nav_links_the_queue(login, agent_a):
    body = login(agent_a).get(reverse("loyalty:member_search")).content.decode()
    assert f'href="{list_url()}"' in body


def test_the_member_page_links_open_shortfalls(login, agent_a, member_a, member_b, shortfall):
    client = login(agent_a)
    link = f"{list_url()}?q={member_a.membership_number}&amp;status=open"
    assert link in client.get(member_a.get_absolute_url()).content.decode()
    assert "open shortfall" not in client.get(member_b.get_absolute_url()).content.decode()
    shortfall_resolve(shortfall=shortfall, actor=JOB, note="Written off")
    assert link not in client.get(member_a.get_absolute_url()).content.decode()


# --- The queue ---------------------------------------------------------------------------


@pytest.fixture
def several(member_a, member_b):
    first = flag_shortfall(member_a, spent=10)
    second = flag_shortfall(member_b, spent=20)
    third = flag_shortfall(member_a, spent=30)
    shortfall_resolve(shortfall=first, actor=JOB, note="Member paid back")
    return first, second, third


def test_open_shortfalls_come_first(login, agent_a, several):
    first, second, third = several
    assert rows(login(agent_a)) == [second, third, first]


def test_the_queue_filters_by_status_program_and_member(
    login, agent_a, program_a, program_b, several, member_b
):
    first, second, third = several
    client = login(agent_a)
    assert rows(client, status="resolved") == [first]
    assert rows(client, status="open", program=program_a.pk) == [second, third]
    assert rows(client, q=member_b.membership_number) == [second]
    assert rows(client, program=program_b.pk) == []  # not one of the agent's programs


def test_the_queue_is_sortable(login, agent_a, several):
    points = [s.points for s in rows(login(agent_a), sort="-points")]
    assert points == [30, 20, 10]


def test_the_queue_exports_csv_without_the_button_column(login, agent_a, member_a, shortfall, member_of_b):
    flag_shortfall(member_of_b)
    response = login(agent_a).get(list_url(), {"_export": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert "shortfalls-" in response["Content-Disposition"]
    header, *data = list(csv.reader(io.StringIO(response.content.decode())))
    assert header == [
        "#",
        "Flagged",
        "Program",
        "Member",
        "Number",
        "Points short",
        "Return reference",
        "Purchase entry",
        "Status",
        "Note",
    ]
    assert [row[2:] for row in data] == [
        [
            "Program A",
            "Alice Member",
            member_a.membership_number,
            "80",
            shortfall.reference,
            str(shortfall.entry_id),
            "Open",
            "",
        ]
    ]


def _queue_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(list_url()).status_code == 200
    return len(captured.captured_queries)


def test_the_queue_runs_the_same_queries_for_3_or_30_shortfalls(login, agent_a, member_a, member_b):
    client = login(agent_a)
    for i in range(3):
        flag_shortfall(member_a if i % 2 else member_b)
    _queue_queries(client)  # warm the session and content type caches
    few = _queue_queries(client)
    for i in range(27):
        flag_shortfall(member_a if i % 2 else member_b)
    assert _queue_queries(client) == few


@pytest.mark.parametrize(
    "query", [{"status": "nope"}, {"program": "x"}, {"sort": "actions"}, {"page": "zz"}, {"_export": "pdf"}]
)
def test_odd_queue_queries_never_fail(login, agent_a, shortfall, query):
    assert login(agent_a).get(list_url(), query).status_code in (200, 404)


# --- Resolving ---------------------------------------------------------------------------


def test_the_page_explains_the_shortfall_and_offers_to_resolve(login, agent_a, shortfall):
    response = login(agent_a).get(detail_url(shortfall))
    body = response.content.decode()
    assert "80 points" in body
    assert shortfall.reference in body
    assert f"?entry={shortfall.entry_id}" in body
    assert f'action="{resolve_url(shortfall)}"' in body


def test_resolving_twice_resolves_once_and_keeps_the_first_note(login, agent_a, shortfall):
    client = login(agent_a)
    first = client.post(resolve_url(shortfall), {"note": "Written off: goodwill"}, follow=True)
    second = client.post(resolve_url(shortfall), {"note": "Another note"}, follow=True)
    resolved = fresh(shortfall)
    assert (resolved.status, resolved.note) == (Status.RESOLVED, "Written off: goodwill")
    assert shortfall.history.filter(status=Status.RESOLVED).count() == 1
    assert shortfall.history.latest("history_id").history_user == agent_a
    assert f"Shortfall #{shortfall.pk} resolved." in messages_of(first)
    assert "already resolved" in messages_of(second)[-1]
    assert first.redirect_chain[-1][0] == list_url()


def test_resolving_moves_no_points(login, agent_a, member_a, shortfall):
    entries = LedgerEntry.objects.count()
    balance = PointsAccount.objects.get(member=member_a).balance
    login(agent_a).post(resolve_url(shortfall), {"note": "Written off"})
    assert LedgerEntry.objects.count() == entries
    assert PointsAccount.objects.get(member=member_a).balance == balance


@pytest.mark.parametrize("note", ["", "   "])
def test_a_note_is_required(login, agent_a, shortfall, note):
    response = login(agent_a).post(resolve_url(shortfall), {"note": note})
    assert response.status_code == 400
    assert response.context["form"].errors["note"]
    assert fresh(shortfall).status == Status.OPEN


def test_a_resolved_shortfall_shows_its_note_and_history(login, agent_a, supervisor, shortfall):
    login(supervisor).post(resolve_url(shortfall), {"note": "Adjustment requested"})
    response = login(agent_a).get(detail_url(shortfall))
    assert response.context["form"] is None
    latest = response.context["history"][0]
    assert latest.who == "supervisor"
    assert {c.field for c in latest.changes} == {"status", "note"}
    assert "Adjustment requested" in response.content.decode()


def test_resolve_is_post_only(login, agent_a, shortfall):
    assert login(agent_a).get(resolve_url(shortfall)).status_code == 405


# --- The service -------------------------------------------------------------------------


def test_the_service_refuses_an_empty_note(shortfall):
    with pytest.raises(ApplicationError) as refused:
        shortfall_resolve(shortfall=shortfall, actor=JOB, note="  ")
    assert refused.value.field == "note"
    assert fresh(shortfall).status == Status.OPEN


def test_the_service_names_the_user_in_the_history(shortfall, agent_a):
    result = shortfall_resolve(shortfall=shortfall, actor=Actor.of_user(agent_a), note=" Written off ")
    assert not result.replayed
    assert result.shortfall.note == "Written off"
    assert shortfall.history.latest("history_id").history_user == agent_a
    assert shortfall_resolve(shortfall=shortfall, actor=JOB, note="Again").replayed
