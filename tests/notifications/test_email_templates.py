"""The member e-mail renders for every kind from the context its sender gives, and nothing more."""

import pytest
from django.template.loader import render_to_string

TEMPLATES = ["notifications/email/generic.txt", "notifications/email/generic.html"]
BASE = {"member": {"first_name": "Ann", "membership_number": "M1"}, "program": {"name": "Bean There"}}


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize(
    ("kind", "extra", "shown"),
    [
        # The disputes app sends `body` / `resolution` without a `message`: that must not break rendering.
        ("dispute_reply", {"body": "We found your points."}, "We found your points."),
        ("dispute_resolved", {"resolution": "Credited 50 points."}, "Credited 50 points."),
        ("dispute_reply", {"message": "Fallback text."}, "Fallback text."),
    ],
)
def test_dispute_mails_render_with_or_without_message(template, kind, extra, shown):
    assert shown in render_to_string(template, {**BASE, "kind": kind, **extra})


def test_the_html_mail_escapes_what_a_member_or_agent_wrote():
    html = render_to_string(
        TEMPLATES[1], {**BASE, "kind": "dispute_reply", "body": "<script>x</script>\nline"}
    )
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt;<br>line" in html
