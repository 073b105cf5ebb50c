"""The member's points history (plain words, breakdown, filters, CSV, pages) and "where did my points go"."""

import csv
import io
from datetime import UTC, datetime

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from loyalty import ledger
from tests.portal.conftest import JOB, earn, redeem, reward

HISTORY = reverse("portal:history")
EXPLAIN = reverse("portal:explain")


def rows_of(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_each_entry_reads_in_plain_words_with_its_breakdown(login, member_a):
    earn(
        member_a,
        150,
        key="buy",
        reason="Purchase at Rue de Rivoli",
        breakdown={"base": 100, "multiplier": 1.5},
    )
    redeem(member_a, reward(member_a.program, name="Coffee", cost=40), key="r")

    html = login(member_a.user).get(HISTORY).content.decode()

    assert "Points earned" in html and "Purchase at Rue de Rivoli" in html
    assert "base: 100 · multiplier: 1.5" in html
    assert "Spent on a reward" in html and "Redeemed Coffee" in html
    assert "-40" in html
    assert "job:test" not in html  # who posted it is the back-office's business


def test_it_filters_by_kind_and_by_day_in_the_programs_time_zone(login, member_a):
    # 23:30 UTC on 9 March is 00:30 on 10 March in Paris.
    earn(member_a, 10, key="a", reason="Late purchase", occurred_at=datetime(2026, 3, 9, 23, 30, tzinfo=UTC))
    earn(
        member_a, 20, key="b", reason="Earlier purchase", occurred_at=datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    )
    earn(member_a, 30, key="c", reason="Birthday gift", kind="bonus")
    client = login(member_a.user)

    by_day = client.get(HISTORY, {"date_from": "2026-03-10", "date_to": "2026-03-10"}).content.decode()
    assert "Late purchase" in by_day and "Earlier purchase" not in by_day and "Birthday gift" not in by_day

    bonuses = client.get(HISTORY, {"kind": "bonus"}).content.decode()
    assert "Birthday gift" in bonuses and "Late purchase" not in bonuses


def test_a_bad_filter_is_shown_not_a_500(login, member_a):
    response = login(member_a.user).get(HISTORY, {"date_from": "yesterday", "kind": "steal"})
    assert response.status_code == 200
    assert "not valid" in response.content.decode()


def test_the_csv_has_every_matching_entry_with_its_reason_and_breakdown(login, member_a):
    earn(member_a, 150, key="buy", reason="Purchase", breakdown={"base": 150})
    earn(member_a, 15, key="wait", reason="Online order", pending_days=10)
    client = login(member_a.user)

    response = client.get(HISTORY, {"_export": "csv"})

    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "my-points-" in response["Content-Disposition"]
    rows = rows_of(response)
    assert [row["Why"] for row in rows] == ["Online order", "Purchase"]
    assert rows[1]["Points"] == "150" and rows[1]["How it was counted"] == "base: 150"
    assert rows[0]["Points"] == "15" and rows[0]["What"] == "Points earned"
    assert rows[1]["Date"].endswith("+01:00") or rows[1]["Date"].endswith("+02:00")  # Paris time
    only_bonus = rows_of(client.get(HISTORY, {"_export": "csv", "kind": "bonus"}))
    assert only_bonus == []


def test_it_pages_through_a_long_history(login, member_a):
    for n in range(30):
        earn(member_a, 1, key=f"e{n}", reason=f"Visit number {n}")
    client = login(member_a.user)

    first = client.get(HISTORY).content.decode()
    second = client.get(HISTORY, {"page": 2}).content.decode()

    assert "Visit number 29" in first and "Visit number 0<" not in first
    assert "Visit number 0<" in second
    assert len(rows_of(client.get(HISTORY, {"_export": "csv"}))) == 30


def _count(client, url, **query) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, query).status_code == 200
    return len(captured)


def test_the_history_costs_the_same_queries_for_5_or_80_entries(login, member_a):
    client = login(member_a.user)
    for n in range(5):
        earn(member_a, 3, key=f"s{n}", breakdown={"base": 3})
    small = (_count(client, HISTORY), _count(client, HISTORY, page=1, kind="earn"))
    for n in range(75):
        earn(member_a, 3, key=f"l{n}", breakdown={"base": 3})
    assert (_count(client, HISTORY), _count(client, HISTORY, page=1, kind="earn")) == small
    assert small[0] <= 10


# --- Where did my points go --------------------------------------------------------


def test_it_tells_where_each_earning_went(login, member_a):
    earn(member_a, 100, key="old", reason="Spring purchase", expires_in_days=5)
    earn(member_a, 80, key="new", reason="Summer purchase", expires_in_days=300)
    earn(member_a, 25, key="wait", reason="Online order", pending_days=7)
    redeem(member_a, reward(member_a.program, name="Cinema ticket", cost=120), key="r")

    page = login(member_a.user).get(EXPLAIN)

    html = page.content.decode()
    assert page.status_code == 200
    assert "You can spend <strong>60 points</strong>" in html
    assert "25 more points are on their way" in html
    # The soonest-expiring earning paid first: all 100 of it, then 20 of the next.
    assert "-100 used on" in html and "-20 used on" in html
    assert "Redeemed Cinema ticket" in html
    assert "Spring purchase" in html and "All used" in html
    assert "/members/" not in html  # no link into the back-office


def test_expired_points_are_named_as_expired(login, member_a):
    earn(member_a, 40, key="gone", reason="Old purchase", expires_in_days=1)
    ledger.expire_due_lots(now=datetime(2100, 1, 1, tzinfo=UTC))

    html = login(member_a.user).get(EXPLAIN).content.decode()

    assert "-40 expired on" in html and "Expired" in html


def test_a_debt_is_explained(login, member_a):
    member_a.program.negative_balance_policy = "allow_debt"
    member_a.program.save()
    ledger.adjust(
        account=member_a.account,
        points=-30,
        reason="Correction of a double credit",
        actor=JOB,
        idempotency_key="fix",
        allow_debt=True,
    )

    html = login(member_a.user).get(EXPLAIN).content.decode()

    assert "owe 30 points" in html


def test_the_explanation_costs_the_same_queries_for_5_or_60_earnings(login, member_a):
    client = login(member_a.user)
    prize = reward(member_a.program, name="Sticker", cost=2)
    for n in range(5):
        earn(member_a, 3, key=f"s{n}")
    redeem(member_a, prize, key="rs")
    small = _count(client, EXPLAIN)
    for n in range(55):
        earn(member_a, 3, key=f"l{n}", pending_days=n % 2)
    redeem(member_a, prize, key="rl")
    assert _count(client, EXPLAIN) == small
