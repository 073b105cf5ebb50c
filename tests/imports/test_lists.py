"""The staff lists (imports, webhook deliveries) cost the same number of queries at any size."""

import pytest
from django.utils import timezone

from loyalty.imports.models import ImportBatch
from loyalty.notifications.models import WebhookDelivery, WebhookEndpoint

pytestmark = pytest.mark.django_db


def _batches(program, user, n):
    ImportBatch.objects.bulk_create(
        ImportBatch(
            program=program,
            kind="transactions",
            filename=f"f{i}.csv",
            sha256="x",
            created_by=user,
            actor_label="user:x",
        )
        for i in range(n)
    )


def _deliveries(program, n):
    endpoint = WebhookEndpoint.objects.create(program=program, url="http://127.0.0.1:9/", events=["x"])
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            endpoint=endpoint,
            program=program,
            event="x",
            event_id=f"{endpoint.pk}-{i}",
            payload={},
            next_attempt_at=timezone.now(),
        )
        for i in range(n)
    )


@pytest.mark.parametrize(
    "url",
    ["/imports/", "/imports/?_export=csv", "/webhooks/deliveries/", "/webhooks/deliveries/?_export=csv"],
)
def test_lists_run_a_constant_number_of_queries(
    url, login, agent_a, program_a, django_assert_max_num_queries
):
    client = login(agent_a)
    counts = []
    for n in (2, 40):
        _batches(program_a, agent_a, n)
        _deliveries(program_a, n)
        with django_assert_max_num_queries(15) as captured:
            assert client.get(url).status_code == 200
        counts.append(len(captured))
    assert counts[0] == counts[1]


def test_agents_see_only_their_programs_imports(login, agent_b, program_a, agent_a):
    _batches(program_a, agent_a, 3)
    page = login(agent_b).get("/imports/")
    assert b"f1.csv" not in page.content
