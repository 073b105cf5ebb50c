"""The agent's redemption screens: the queue, one redemption with its actions, and the redeem form."""

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loyalty import ledger
from loyalty.ledger import Actor
from loyalty.models import LedgerEntry, PointsAccount, Redemption, Reward, Tier
from loyalty.redemptions import redemption_approve, redemption_cancel, redemption_fulfil, redemption_request

JOB = Actor.job("test")
Source = LedgerEntry.Source
Status = Redemption.Status
# Funds are credited long ago and never expire, so a redemption may be dated any time after.
FUNDED_AT = datetime(2025, 1, 1, tzinfo=UTC)


def fund(member, points=1000):
    ledger.credit(
        account=member.account,
        points=points,
        reason="Purchase",
        actor=JOB,
        idempotency_key=f"fund-{uuid.uuid4()}",
        source=Source.API,
        now=FUNDED_AT,
        expires_at=None,
    )


def redeem(member, reward, *, channel=Source.AGENT, now=None) -> Redemption:
    return redemption_request(
        member=member, reward=reward, idempotency_key=str(uuid.uuid4()), channel=channel, actor=JOB, now=now
    ).redemption


def balance(member) -> int:
    return PointsAccount.objects.get(member=member).balance


def fresh(redemption) -> Redemption:
    return Redemption.objects.get(pk=redemption.pk)


def detail_url(redemption):
    return reverse("loyalty:redemption_detail", kwargs={"pk": redemption.pk})


def action_url(redemption, action):
    return reverse("loyalty:redemption_action", kwargs={"pk": redemption.pk, "action": action})


def redeem_url(member):
    return reverse("loyalty:member_redeem", kwargs={"number": member.membership_number})


def queue(client, **query):
    response = client.get(reverse("loyalty:redemption_list"), query)
    assert response.status_code == 200
    return [row.record for row in response.context["table"].page.object_list]


def csv_rows(response):
    return list(csv.reader(io.StringIO(response.content.decode())))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def cinema(program_a):
    return Reward.objects.create(program=program_a, name="Cinema ticket", cost_points=300, stock=5)


@pytest.fixture
def headphones(program_a):
    return Reward.objects.create(
        program=program_a,
        name="Headphones",
        cost_points=250,
        stock=2,
        fulfilment=Reward.Fulfilment.SHIPMENT,
    )


@pytest.fixture
def funded(member_a):
    fund(member_a)
    return member_a


@pytest.fixture
def requested(funded, cinema):
    """Member A's cinema ticket, just requested: 300 of their 1,000 points have left the balance."""
    return redeem(funded, cinema)


# --- Access ----------------------------------------------------------------------------


def _pages(redemption):
    return [reverse("loyalty:redemption_list"), detail_url(redemption), redeem_url(redemption.member)]


def test_every_page_works_for_an_agent_of_the_program(login, agent_a, requested):
    client = login(agent_a)
    for path in _pages(requested):
        assert client.get(path).status_code == 200, path


def test_another_programs_agent_gets_a_404(login, agent_b, requested):
    client = login(agent_b)
    assert client.get(detail_url(requested)).status_code == 404
    assert client.get(redeem_url(requested.member)).status_code == 404
    assert client.post(action_url(requested, "approve")).status_code == 404
    assert fresh(requested).status == Status.REQUESTED


def test_another_programs_agent_does_not_see_it_in_the_queue(login, agent_b, requested):
    assert queue(login(agent_b), status="all") == []


def test_anonymous_users_go_to_login(client, requested):
    for path in [*_pages(requested), action_url(requested, "approve")]:
        method = client.post if path.endswith("/approve/") else client.get
        response = method(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith(reverse("login"))
    assert fresh(requested).status == Status.REQUESTED


def test_members_are_forbidden(login, requested):
    client = login(requested.member.user)
    for path in _pages(requested):
        assert client.get(path).status_code == 403, path
    assert client.post(action_url(requested, "approve")).status_code == 403
    assert fresh(requested).status == Status.REQUESTED


def test_the_staff_nav_links_the_queue(login, agent_a):
    body = login(agent_a).get(reverse("loyalty:member_search")).content.decode()
    assert f'href="{reverse("loyalty:redemption_list")}"' in body


def test_the_member_page_links_the_redeem_form_and_the_members_redemptions(login, agent_a, member_a):
    body = login(agent_a).get(member_a.get_absolute_url()).content.decode()
    assert redeem_url(member_a) in body
    assert f"{reverse('loyalty:redemption_list')}?q={member_a.membership_number}&amp;status=all" in body


# --- The queue ---------------------------------------------------------------------------


@pytest.fixture
def mixed(funded, member_b, cinema, headphones):
    """Five redemptions on consecutive days: two open (one approved), three closed."""
    fund(member_b)
    start = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
    made = {}
    for i, (name, member, reward, channel) in enumerate(
        [
            ("old_requested", funded, cinema, Source.AGENT),
            ("approved", member_b, headphones, Source.PORTAL),
            ("fulfilled", funded, cinema, Source.API),
            ("cancelled", member_b, cinema, Source.AGENT),
            ("new_requested", member_b, cinema, Source.API),
        ]
    ):
        made[name] = redeem(member, reward, channel=channel, now=start + timedelta(days=i))
    redemption_approve(redemption=made["approved"], actor=JOB)
    redemption_approve(redemption=made["fulfilled"], actor=JOB)
    redemption_fulfil(redemption=made["fulfilled"], actor=JOB)
    redemption_cancel(redemption=made["cancelled"], actor=JOB, reason="Changed their mind")
    return made


def test_the_queue_shows_open_redemptions_oldest_first(login, agent_a, mixed):
    assert queue(login(agent_a)) == [mixed["old_requested"], mixed["approved"], mixed["new_requested"]]


def test_the_queue_filters_by_status(login, agent_a, mixed):
    client = login(agent_a)
    assert queue(client, status="fulfilled") == [mixed["fulfilled"]]
    assert queue(client, status="approved") == [mixed["approved"]]
    assert len(queue(client, status="all")) == 5


def test_the_queue_filters_by_reward_channel_and_member(login, agent_a, mixed, headphones, member_b):
    client = login(agent_a)
    assert queue(client, reward=headphones.pk) == [mixed["approved"]]
    assert queue(client, channel="api", status="all") == [mixed["fulfilled"], mixed["new_requested"]]
    assert queue(client, q=member_b.membership_number) == [mixed["approved"], mixed["new_requested"]]
    assert queue(client, q="alice", status="all") == [mixed["old_requested"], mixed["fulfilled"]]


def test_the_queue_filters_by_program_only_within_the_agents(login, agent_a, program_a, program_b, mixed):
    client = login(agent_a)
    assert len(queue(client, program=program_a.pk)) == 3
    response = client.get(reverse("loyalty:redemption_list"), {"program": program_b.pk})
    assert response.status_code == 200
    assert response.context["filter"].errors["program"]
    assert list(response.context["table"].page.object_list) == []


def test_the_queue_filters_by_requested_day_in_the_programs_time_zone(login, agent_a, funded, cinema):
    late = redeem(funded, cinema, now=datetime(2025, 3, 10, 22, 30, tzinfo=UTC))  # 23:30 in Paris
    early = redeem(funded, cinema, now=datetime(2025, 3, 10, 23, 30, tzinfo=UTC))  # 00:30 the next day
    client = login(agent_a)
    assert queue(client, requested_from="2025-03-10", requested_to="2025-03-10") == [late]
    assert queue(client, requested_from="2025-03-11") == [early]
    assert queue(client, requested_to="2025-03-09") == []


def test_the_queue_is_sortable(login, agent_a, mixed):
    records = queue(login(agent_a), status="all", sort="-points")
    assert [r.points for r in records] == sorted((r.points for r in records), reverse=True)
    assert queue(login(agent_a), sort="-created_at")[0] == mixed["new_requested"]


def test_the_queue_links_each_row_to_the_redemption_and_the_member(login, agent_a, requested):
    body = login(agent_a).get(reverse("loyalty:redemption_list")).content.decode()
    assert f'href="{detail_url(requested)}"' in body
    assert f'href="{requested.member.get_absolute_url()}"' in body
    assert "Requested</span>" in body


def test_the_queue_exports_csv_without_the_button_column(login, agent_a, mixed, member_of_b):
    fund(member_of_b)
    redeem(member_of_b, Reward.objects.create(program=member_of_b.program, name="Mug", cost_points=10))
    response = login(agent_a).get(reverse("loyalty:redemption_list"), {"_export": "csv", "status": "all"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "redemptions-" in response["Content-Disposition"]
    header, *rows = csv_rows(response)
    assert header == [
        "#",
        "Requested",
        "Program",
        "Member",
        "Number",
        "Reward",
        "Points",
        "Status",
        "Channel",
        "Voucher",
    ]
    assert len(rows) == 5  # program B's mug is not there
    fulfilled = mixed["fulfilled"]
    fulfilled.refresh_from_db()
    row = next(r for r in rows if r[0] == str(fulfilled.pk))
    assert row[2:] == [
        "Program A",
        "Alice Member",
        fulfilled.member.membership_number,
        "Cinema ticket",
        "300",
        "Fulfilled",
        "Client API",
        fulfilled.voucher_code,
    ]
    requested_at = datetime.fromisoformat(row[1])
    assert requested_at.utcoffset() == timedelta(hours=2)  # Paris summer time


def _queue_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("loyalty:redemption_list"), {"status": "all"})
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_the_queue_runs_the_same_queries_for_3_or_30_redemptions(login, agent_a, funded, member_b, cinema):
    fund(funded, 100_000)
    fund(member_b, 100_000)
    Reward.objects.filter(pk=cinema.pk).update(stock=None)
    client = login(agent_a)
    for _ in range(3):
        redeem(funded, cinema)
    _queue_queries(client)  # warm the session and content type caches
    few = _queue_queries(client)
    for i in range(27):
        redeem(funded if i % 2 else member_b, cinema)
    assert _queue_queries(client) == few


@pytest.mark.parametrize(
    "query",
    [
        {"status": "nope"},
        {"program": "abc"},
        {"reward": "999999"},
        {"requested_from": "0001-01-01", "requested_to": "9999-12-31"},
        {"requested_from": "yesterday"},
        {"sort": "actions"},
        {"sort": "no_such_column", "page": "-2"},
        {"page": "999"},
        {"q": "9" * 200},
        {"_export": "xlsx"},
    ],
)
def test_odd_queue_queries_never_fail(login, agent_a, requested, query):
    response = login(agent_a).get(reverse("loyalty:redemption_list"), query)
    assert response.status_code in (200, 404)
    assert response["Content-Type"].startswith("text/html")


# --- One redemption ----------------------------------------------------------------------


def test_the_page_shows_the_details_the_balance_and_the_debit(login, agent_a, requested):
    response = login(agent_a).get(detail_url(requested))
    body = response.content.decode()
    assert "Cinema ticket" in body
    assert "Alice Member" in body
    assert response.context["account"].balance == 700
    assert response.context["entries"] == [requested.debit_entry]
    assert f"?entry={requested.debit_entry_id}" in body
    assert set(response.context["action_forms"]) == {"approve", "reject", "cancel"}


def test_the_page_shows_who_did_what(login, agent_a, supervisor, requested):
    login(supervisor).post(action_url(requested, "approve"))
    response = login(agent_a).get(detail_url(requested))
    latest, first = response.context["history"]
    assert latest.who == "supervisor"
    assert [(c.field, c.old, c.new) for c in latest.changes] == [("status", "Requested", "Approved")]
    assert first.record.history_type == "+"
    assert "Approved" in response.content.decode()


def test_a_final_redemption_offers_no_action(login, agent_a, requested):
    redemption_cancel(redemption=requested, actor=JOB, reason="Member asked")
    response = login(agent_a).get(detail_url(requested))
    assert response.context["action_forms"] == {}
    assert "nothing more can happen" in response.content.decode()
    assert response.context["entries"][1].kind == LedgerEntry.Kind.REFUND


# --- Actions -----------------------------------------------------------------------------


def test_approving_twice_approves_once(login, agent_a, requested):
    client = login(agent_a)
    first = client.post(action_url(requested, "approve"))
    second = client.post(action_url(requested, "approve"), follow=True)
    assert first.status_code == 302
    assert first["Location"] == detail_url(requested)
    assert fresh(requested).status == Status.APPROVED
    assert requested.history.filter(status=Status.APPROVED).count() == 1
    assert "was already approved; nothing changed" in messages_of(second)[-1]
    assert requested.history.latest("history_id").history_user == agent_a


def test_an_approval_says_so(login, agent_a, requested):
    response = login(agent_a).post(action_url(requested, "approve"), follow=True)
    assert f"Redemption #{requested.pk} approved." in response.content.decode()


def test_fulfilling_a_voucher_generates_its_code(login, agent_a, requested):
    redemption_approve(redemption=requested, actor=JOB)
    response = login(agent_a).post(action_url(requested, "fulfil"), follow=True)
    redemption = fresh(requested)
    assert redemption.status == Status.FULFILLED
    assert len(redemption.voucher_code) == 14
    assert redemption.voucher_code in response.content.decode()


def test_fulfilling_twice_keeps_the_first_voucher(login, agent_a, requested):
    redemption_approve(redemption=requested, actor=JOB)
    client = login(agent_a)
    client.post(action_url(requested, "fulfil"))
    code = fresh(requested).voucher_code
    client.post(action_url(requested, "fulfil"))
    assert fresh(requested).voucher_code == code


def test_a_shipment_needs_its_shipping_note(login, agent_a, funded, headphones):
    redemption = redeem(funded, headphones)
    redemption_approve(redemption=redemption, actor=JOB)
    client = login(agent_a)
    refused = client.post(action_url(redemption, "fulfil"), {"fulfil-shipping_note": "  "})
    assert refused.status_code == 400
    assert refused.context["action_forms"]["fulfil"].errors["shipping_note"]
    assert "needs a shipping note" in messages_of(refused)[0]
    assert fresh(redemption).status == Status.APPROVED
    client.post(action_url(redemption, "fulfil"), {"fulfil-shipping_note": "DHL 00340434161094042557"})
    assert (fresh(redemption).status, fresh(redemption).shipping_note) == (
        Status.FULFILLED,
        "DHL 00340434161094042557",
    )


def test_cancelling_refunds_the_points_and_the_stock_once(login, agent_a, requested, cinema):
    assert (balance(requested.member), Reward.objects.get(pk=cinema.pk).stock) == (700, 4)
    client = login(agent_a)
    data = {"cancel-reason": "Member changed their mind"}
    first = client.post(action_url(requested, "cancel"), data, follow=True)
    second = client.post(action_url(requested, "cancel"), data, follow=True)
    redemption = fresh(requested)
    assert redemption.status == Status.CANCELLED
    assert redemption.decision_reason == "Member changed their mind"
    assert (balance(requested.member), Reward.objects.get(pk=cinema.pk).stock) == (1000, 5)
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REFUND).count() == 1
    assert redemption.refund_entry.actor == agent_a
    assert "300 points refunded, balance now 1,000" in messages_of(first)[-1]
    assert "already cancelled" in messages_of(second)[-1]
    assert ledger.reconcile() == []


def test_rejecting_refunds_the_points(login, agent_a, requested):
    redemption_approve(redemption=requested, actor=JOB)
    login(agent_a).post(action_url(requested, "reject"), {"reject-reason": "Address is not deliverable"})
    assert fresh(requested).status == Status.REJECTED
    assert balance(requested.member) == 1000


@pytest.mark.parametrize("action", ["reject", "cancel"])
def test_rejecting_or_cancelling_needs_a_reason(login, agent_a, requested, action):
    response = login(agent_a).post(action_url(requested, action), {f"{action}-reason": "   "})
    assert response.status_code == 400
    assert response.context["action_forms"][action].errors["reason"]
    assert fresh(requested).status == Status.REQUESTED
    assert balance(requested.member) == 700


def test_an_illegal_move_shows_the_reason_and_changes_nothing(login, agent_a, requested):
    client = login(agent_a)
    response = client.post(action_url(requested, "fulfil"))  # not approved yet
    assert response.status_code == 409
    assert messages_of(response) == ["This redemption must be approved before it is fulfilled."]
    assert "must be approved before it is fulfilled" in response.content.decode()
    assert set(response.context["action_forms"]) == {"approve", "reject", "cancel"}
    assert fresh(requested).status == Status.REQUESTED
    assert fresh(requested).voucher_code == ""


def test_a_closed_redemption_cannot_be_approved(login, agent_a, requested):
    redemption_cancel(redemption=requested, actor=JOB, reason="Member asked")
    history = requested.history.count()
    response = login(agent_a).post(action_url(requested, "approve"))
    assert response.status_code == 409
    assert "cancelled; it can no longer be approved" in messages_of(response)[0]
    assert fresh(requested).status == Status.CANCELLED
    assert requested.history.count() == history
    assert balance(requested.member) == 1000


def test_actions_are_post_only(login, agent_a, requested):
    assert login(agent_a).get(action_url(requested, "approve")).status_code == 405
    assert fresh(requested).status == Status.REQUESTED


def test_an_unknown_action_is_a_404(login, agent_a, requested):
    assert login(agent_a).post(action_url(requested, "delete")).status_code == 404


def test_an_unknown_redemption_is_a_404(login, agent_a):
    client = login(agent_a)
    assert client.get(reverse("loyalty:redemption_detail", kwargs={"pk": 10**18})).status_code == 404


# --- The redeem form ---------------------------------------------------------------------


@pytest.fixture
def gold(program_a):
    return Tier.objects.create(program=program_a, name="Gold", rank=2, threshold=5000)


def redeem_form(reward, key=None):
    return {"reward": reward.pk, "idempotency_key": key or str(uuid.uuid4())}


def test_the_form_lists_the_rewards_with_what_stands_in_the_way(login, agent_a, funded, cinema, gold):
    suite = Reward.objects.create(program=funded.program, name="Spa day", cost_points=5000, stock=3)
    vip = Reward.objects.create(program=funded.program, name="Lounge pass", cost_points=10, min_tier=gold)
    gone = Reward.objects.create(program=funded.program, name="Poster", cost_points=5, stock=0)
    Reward.objects.create(program=funded.program, name="Retired", cost_points=5, is_active=False)
    response = login(agent_a).get(redeem_url(funded))
    options = {option.reward.name: option.blocked_by for option in response.context["options"]}
    assert options == {
        "Poster": "Out of stock",
        "Lounge pass": "Needs the Gold tier",
        "Cinema ticket": "",
        "Spa day": "Not enough points",
    }
    body = response.content.decode()
    assert 'name="idempotency_key"' in body
    assert f'value="{suite.pk}"' in body and f'value="{vip.pk}"' in body and f'value="{gone.pk}"' in body
    assert "Unlimited" in body  # the lounge pass has no stock limit


def test_the_form_carries_a_fresh_key(login, agent_a, funded):
    client = login(agent_a)
    first = client.get(redeem_url(funded)).context["form"]["idempotency_key"].value()
    second = client.get(redeem_url(funded)).context["form"]["idempotency_key"].value()
    assert uuid.UUID(str(first)) != uuid.UUID(str(second))


def test_a_double_submit_redeems_once(login, agent_a, funded, cinema):
    client = login(agent_a)
    data = redeem_form(cinema)
    first = client.post(redeem_url(funded), data)
    second = client.post(redeem_url(funded), data, follow=True)
    redemption = Redemption.objects.get()
    assert first.status_code == 302
    assert first["Location"] == detail_url(redemption)
    assert balance(funded) == 700
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REDEEM).count() == 1
    assert (redemption.channel, redemption.requested_by, redemption.status) == (
        Source.AGENT,
        agent_a,
        Status.REQUESTED,
    )
    assert redemption.debit_entry.actor_label == "user:agent-a"
    assert "already requested" in messages_of(second)[-1]


def test_a_successful_request_says_so(login, agent_a, funded, cinema):
    response = login(agent_a).post(redeem_url(funded), redeem_form(cinema), follow=True)
    assert "Cinema ticket requested for 300 points" in response.content.decode()
    assert "Balance now 700" in response.content.decode()


def test_not_enough_points_is_a_form_error(login, agent_a, member_a, cinema):
    fund(member_a, 100)
    response = login(agent_a).post(redeem_url(member_a), redeem_form(cinema))
    assert response.status_code == 409
    assert "Only 100 points are available" in response.context["form"].errors["reward"][0]
    assert not Redemption.objects.exists()
    assert Reward.objects.get(pk=cinema.pk).stock == 5
    assert balance(member_a) == 100


def test_out_of_stock_is_a_form_error(login, agent_a, funded, cinema):
    Reward.objects.filter(pk=cinema.pk).update(stock=0)
    response = login(agent_a).post(redeem_url(funded), redeem_form(cinema))
    assert response.status_code == 409
    assert "out of stock" in response.context["form"].errors["reward"][0]
    assert balance(funded) == 1000


def test_a_tier_too_low_is_a_form_error(login, agent_a, funded, cinema, gold):
    cinema.min_tier = gold
    cinema.save()
    response = login(agent_a).post(redeem_url(funded), redeem_form(cinema))
    assert response.status_code == 409
    assert "needs the Gold tier" in response.context["form"].errors["reward"][0]
    assert balance(funded) == 1000


def test_an_inactive_member_cannot_redeem(login, agent_a, funded, cinema):
    funded.status = "suspended"
    funded.save()
    response = login(agent_a).post(redeem_url(funded), redeem_form(cinema))
    assert response.status_code == 409
    assert "only active members can redeem" in response.context["form"].non_field_errors()[0]
    assert not Redemption.objects.exists()


def test_another_programs_reward_is_not_a_choice(login, agent_a, funded, member_of_b):
    mug = Reward.objects.create(program=member_of_b.program, name="Mug", cost_points=10)
    response = login(agent_a).post(redeem_url(funded), redeem_form(mug))
    assert response.status_code == 400
    assert response.context["form"].errors["reward"]
    assert not Redemption.objects.exists()


@pytest.mark.parametrize(
    "data", [{}, {"reward": "abc"}, {"idempotency_key": "not-a-uuid"}, {"idempotency_key": ""}]
)
def test_a_bad_request_form_is_a_form_error(login, agent_a, funded, cinema, data):
    response = login(agent_a).post(redeem_url(funded), {**redeem_form(cinema), **data} if data else {})
    assert response.status_code == 400
    assert response.context["form"].errors
    assert not Redemption.objects.exists()


def test_reusing_a_key_for_another_reward_redeems_nothing_more(login, agent_a, funded, cinema, headphones):
    client = login(agent_a)
    key = str(uuid.uuid4())
    client.post(redeem_url(funded), redeem_form(cinema, key))
    response = client.post(redeem_url(funded), redeem_form(headphones, key))
    assert response.status_code == 409
    form = response.context["form"]
    assert "already been submitted" in form.non_field_errors()[0]
    assert form["idempotency_key"].value() != key
    assert Redemption.objects.count() == 1
    assert balance(funded) == 700
