"""The share link, the member's page, the agent's queue, attribution screen and report."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from referrals import services
from referrals.models import Referral, ReferralClick
from referrals.selectors import referral_funnel
from tests.referrals.conftest import buy, join

Status = Referral.Status


# --- Share link --------------------------------------------------------------------------------


def test_the_share_link_records_the_click_and_sends_to_sign_up_with_the_code(client, code_a, program_a):
    response = client.get(f"/r/{code_a.lower()}", HTTP_USER_AGENT="Phone", REMOTE_ADDR="192.0.2.44")
    assert response.status_code == 302
    assert response["Location"].endswith(f"?ref={code_a}")
    device = response.cookies[services.DEVICE_COOKIE]
    assert device["httponly"] and int(device["max-age"]) > 365 * 24 * 3600
    click = ReferralClick.objects.get()
    assert (click.ip, click.user_agent, click.device_id) == ("192.0.2.44", "Phone", device.value)
    # The same browser keeps its device id; the sign-up that follows carries it to the referral.
    client.get(f"/r/{code_a}")
    assert set(ReferralClick.objects.values_list("device_id", flat=True)) == {device.value}
    referee = join(program_a, code_a, meta={"device_id": device.value})
    assert referee.referral.click == ReferralClick.objects.order_by("-id").first()


def test_an_unknown_share_link_is_a_404(client, policy_a):
    assert client.get("/r/NOPE2345").status_code == 404
    assert not ReferralClick.objects.exists()


# --- The member's page --------------------------------------------------------------------------


def test_a_member_sees_their_link_and_their_referrals_without_fraud_details(
    code_a, program_a, member_a, login
):
    from loyalty.models import Member

    pending = join(program_a, code_a, first_name="Pat")
    Member.objects.filter(pk=member_a.pk).update(email="alice@gmail.com")
    held = join(program_a, code_a, first_name="Hal", email="alice+2@gmail.com")
    buy(held, "50.00")
    paid = join(program_a, code_a, first_name="Ray")
    buy(paid, "50.00")
    client = login(member_a.user)
    page = client.get(reverse("referrals:my_referrals"))
    body = page.content.decode()
    assert page.status_code == 200
    assert f"http://testserver/r/{code_a}" in body and "Copy link" in body
    assert "Pat R." in body and "waiting for their first qualifying purchase" in body
    assert "Hal R." in body and "Being checked by our team" in body
    assert "Ray R." in body and "Rewarded" in body
    assert "email" not in body.lower().split("people you referred")[1]  # no signal shown to members
    assert "Same email" not in body and "score" not in body.lower()
    # The visit remembers the member's browser for the shared-device signal.
    assert services.DEVICE_COOKIE in page.cookies
    assert pending.referral.status == Status.PENDING


def test_a_referral_whose_window_passed_is_not_shown_as_still_waiting(
    code_a, program_a, member_a, agent_a, login
):
    late = join(program_a, code_a, first_name="Lou")
    recent = join(program_a, code_a, first_name="Kim")
    Referral.objects.filter(pk=late.referral.pk).update(signed_up_at=timezone.now() - timedelta(days=31))

    body = login(member_a.user).get(reverse("referrals:my_referrals")).content.decode()
    rows = {name: body.split(name, 1)[1].split("</tr>", 1)[0] for name in ("Lou R.", "Kim R.")}
    assert "No qualifying purchase within the time allowed" in rows["Lou R."]
    assert "waiting for their first qualifying purchase" in rows["Kim R."]
    # The agent's page says the same, and a purchase now indeed does not qualify it.
    detail = login(agent_a).get(reverse("referrals:detail", args=[late.referral.pk])).content.decode()
    assert "The window closed on" in detail and "Waiting for a purchase" not in detail
    buy(late, "50.00")
    assert Referral.objects.get(pk=late.referral.pk).status == Referral.Status.PENDING
    assert recent.referral.status == Referral.Status.PENDING


def test_a_member_of_a_program_without_a_scheme_is_told_so(member_a, login):
    page = login(member_a.user).get(reverse("referrals:my_referrals"))
    assert page.status_code == 200 and "no referral scheme" in page.content.decode()


# --- The agent's queue ---------------------------------------------------------------------------


def _referrals(program, code, n):
    return [join(program, code) for _ in range(n)]


def test_the_queue_finds_by_code_or_member_and_exports_csv(code_a, program_a, member_a, login, agent_a):
    referee = join(program_a, code_a, first_name="Zed")
    client = login(agent_a)
    by_code = client.get(reverse("referrals:list"), {"q": code_a})
    assert by_code.status_code == 200 and f"referral-{referee.referral.pk}" in by_code.content.decode()
    by_member = client.get(reverse("referrals:list"), {"q": referee.membership_number})
    assert f"referral-{referee.referral.pk}" in by_member.content.decode()
    nobody = client.get(reverse("referrals:list"), {"q": "no such person"})
    assert f"referral-{referee.referral.pk}" not in nobody.content.decode()
    csv = client.get(reverse("referrals:list"), {"_export": "csv"})
    assert csv["Content-Type"].startswith("text/csv")
    assert "Zed Referee" in csv.content.decode() and "Pending" in csv.content.decode()


def test_the_review_filter_shows_held_referrals_only(code_a, program_a, member_a, login, agent_a):
    from loyalty.models import Member

    Member.objects.filter(pk=member_a.pk).update(phone="0612345678")
    held = join(program_a, code_a, phone="+33612345678")
    buy(held, "50.00")
    other = join(program_a, code_a)
    body = login(agent_a).get(reverse("referrals:list"), {"status": "review"}).content.decode()
    assert f"referral-{held.referral.pk}" in body and f"referral-{other.referral.pk}" not in body


def test_the_queue_runs_a_constant_number_of_queries(
    code_a, program_a, login, agent_a, django_assert_max_num_queries
):
    client = login(agent_a)
    _referrals(program_a, code_a, 2)
    with django_assert_max_num_queries(12) as few:
        assert client.get(reverse("referrals:list")).status_code == 200
    _referrals(program_a, code_a, 20)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(reverse("referrals:list")).status_code == 200


def test_an_agent_sees_only_their_programs_referrals(code_a, program_a, login, agent_b):
    referee = join(program_a, code_a)
    body = login(agent_b).get(reverse("referrals:list")).content.decode()
    assert f"referral-{referee.referral.pk}" not in body


# --- Attribution screen ------------------------------------------------------------------------------


def test_an_agent_attributes_a_referral_on_the_member(code_a, member_b, login, agent_a):
    client = login(agent_a)
    url = reverse("referrals:attribute", kwargs={"number": member_b.membership_number})
    assert client.get(url).status_code == 200
    refused = client.post(url, {"referral_code": "WRONG123", "reason": "Ticket 7"})
    assert refused.status_code == 400 and "not valid" in refused.content.decode()
    assert client.post(url, {"referral_code": code_a, "reason": "Ticket 7"}).status_code == 302
    referral = Referral.objects.get(referee=member_b)
    assert referral.attributed_by == agent_a and referral.attribution_reason == "Ticket 7"
    again = client.post(url, {"referral_code": code_a, "reason": "Ticket 8"})
    assert again.status_code == 409 and "already referred" in again.content.decode()


# --- Report and funnel --------------------------------------------------------------------------------


@pytest.fixture
def funnel_data(code_a, program_a, member_a, agent_a, client):
    from loyalty.models import Member

    client.get(f"/r/{code_a}")
    client.get(f"/r/{code_a}")
    paid = join(program_a, code_a)
    buy(paid, "30.00")
    join(program_a, code_a)  # pending
    Member.objects.filter(pk=member_a.pk).update(email="alice@gmail.com")
    rejected = join(program_a, code_a, email="ALICE@gmail.com")
    buy(rejected, "30.00")
    services.referral_reject(referral=rejected.referral, user=agent_a, reason="Self-referral")


def test_the_funnel_counts_each_stage_in_three_queries(funnel_data, program_a, django_assert_num_queries):
    now = timezone.now()
    with django_assert_num_queries(3):
        funnel = referral_funnel(program_ids=[program_a.pk], start=now - timedelta(days=1), end=now)
    assert funnel == {
        "clicks": 2,
        "signups": 3,
        "qualified": 2,
        "rewarded": 1,
        "held": 1,
        "rejected": 1,
        "points_paid": 750,
    }
    empty = referral_funnel(
        program_ids=[program_a.pk], start=now - timedelta(days=9), end=now - timedelta(days=8)
    )
    assert set(empty.values()) == {0}


def test_the_report_shows_the_funnel_a_chart_and_top_referrers_and_exports(
    funnel_data, member_a, login, agent_a
):
    client = login(agent_a)
    page = client.get(reverse("referrals:report"))
    body = page.content.decode()
    assert page.status_code == 200
    assert "<svg" in body and "Top referrers" in body and member_a.full_name in body
    assert "66.7%" in body  # 2 of 3 sign-ups qualified
    csv = client.get(reverse("referrals:report"), {"_export": "csv"}).content.decode()
    header, row = csv.strip().splitlines()[:2]
    assert header.startswith("Program,Clicks,Sign-ups") and row.startswith("Program A,2,3,2,1,1,1")
    assert row.endswith(",750")


def test_the_default_period_ends_today_in_the_reports_time_zone(
    code_a, program_a, login, agent_a, monkeypatch
):
    # 23:30 in UTC is already tomorrow in Paris, program A's time zone: the sign-up made now
    # is on the report's last day, not after it.
    late = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)
    monkeypatch.setattr(timezone, "now", lambda: late)
    join(program_a, code_a)

    body = login(agent_a).get(reverse("referrals:report")).content.decode()
    assert 'value="2026-12-05"' in body  # the end field
    assert "Nobody referred anyone" not in body and "Top referrers" in body


def test_a_bad_report_period_is_a_form_error(login, agent_a, policy_a):
    page = login(agent_a).get(reverse("referrals:report"), {"start": "2026-05-01", "end": "2026-04-01"})
    assert page.status_code == 400 and "before the start" in page.content.decode()


def test_the_report_runs_a_constant_number_of_queries(
    code_a, program_a, login, agent_a, django_assert_max_num_queries
):
    client = login(agent_a)
    for referee in _referrals(program_a, code_a, 2):
        buy(referee, "30.00")
    with django_assert_max_num_queries(20) as few:
        client.get(reverse("referrals:report"))
    for referee in _referrals(program_a, code_a, 8):
        buy(referee, "30.00")
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("referrals:report"))


def test_the_attribute_box_goes_to_the_members_page_or_back_with_an_error(member_b, login, agent_a, policy_a):
    client = login(agent_a)
    url = reverse("referrals:attribute_start")
    assert client.get(url, {"number": f" {member_b.membership_number} "})["Location"] == reverse(
        "referrals:attribute", kwargs={"number": member_b.membership_number}
    )
    assert client.get(url, {"number": ""})["Location"] == reverse("referrals:list")
    assert client.get(url, {"number": "999"}).status_code == 404


def test_the_members_page_runs_a_constant_number_of_queries(
    code_a, program_a, member_a, login, django_assert_max_num_queries
):
    client = login(member_a.user)
    _referrals(program_a, code_a, 2)
    with django_assert_max_num_queries(15) as few:
        assert client.get(reverse("referrals:my_referrals")).status_code == 200
    _referrals(program_a, code_a, 15)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get(reverse("referrals:my_referrals")).status_code == 200
