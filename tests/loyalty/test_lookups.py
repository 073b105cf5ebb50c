"""`field__any` finds what `field__in` finds, for plain values (sent as they are) and for any
other value (prepared by the field, as `in` prepares it)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.functional import lazy

from loyalty.models import Member
from loyalty.services import member_create

pytestmark = pytest.mark.django_db

lazy_str = lazy(lambda text: text, str)


@pytest.fixture
def members(program_a):
    return [member_create(program=program_a, first_name="M", last_name=str(n)) for n in range(4)]


def _ids(queryset) -> list[int]:
    return sorted(queryset.values_list("pk", flat=True))


def test_any_finds_what_in_finds(members):
    numbers = [m.membership_number for m in members]
    pks = [m.pk for m in members]
    cases = [
        ("membership_number", numbers[:2]),
        ("membership_number", (numbers[0], numbers[0], numbers[3])),  # duplicates
        ("membership_number", {numbers[1], "NOBODY"}),
        ("membership_number", [numbers[2], None]),  # None matches nothing, as in `in`
        ("membership_number", [lazy_str(numbers[0]), numbers[1]]),  # a lazy string: prepared
        ("membership_number", []),
        ("pk", pks[1:]),
        ("pk", [str(pks[0]), pks[1]]),  # a number as text: the field makes it an int
        ("pk", [True, pks[2]]),  # a bool: prepared, as `in` prepares it
    ]
    for name, values in cases:
        expected = _ids(Member.objects.filter(**{f"{name}__in": values}))
        assert _ids(Member.objects.filter(**{f"{name}__any": values})) == expected, (name, values)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="= ANY(array) is PostgreSQL's")
def test_any_sends_one_array_on_postgresql(members):
    numbers = [m.membership_number for m in members]
    everyone = _ids(Member.objects.all())
    with CaptureQueriesContext(connection) as queries:
        found = _ids(Member.objects.filter(membership_number__any=numbers + numbers))
    assert found == everyone
    (query,) = queries.captured_queries
    assert "= ANY(" in query["sql"] and " IN (" not in query["sql"]
