"""The member edits their own contact details; the change is in the history, attributed to them."""

from django.urls import reverse

from loyalty.models import Member

PROFILE = reverse("portal:profile")


def details(**overrides):
    data = {"first_name": "Alice", "last_name": "Member", "email": "member-a@example.com", "phone": ""}
    data.update(overrides)
    return data


def test_the_form_is_labelled_and_filled_in(login, member_a):
    html = login(member_a.user).get(PROFILE).content.decode()

    for field in ("first_name", "last_name", "email", "phone"):
        assert f'<label for="id_{field}"' in html
    assert 'value="member-a@example.com"' in html
    assert reverse("password_change") in html


def test_a_change_is_saved_and_attributed_to_the_member(login, member_a):
    client = login(member_a.user)

    response = client.post(PROFILE, details(phone="+33 6 00 00 00 01", email="Alice@New.example"))

    assert response.status_code == 302
    member_a.refresh_from_db()
    assert (member_a.phone, member_a.email) == ("+33 6 00 00 00 01", "alice@new.example")
    member_a.user.refresh_from_db()
    assert member_a.user.email == "alice@new.example"  # password resets follow the new address
    record = member_a.history.latest("history_date")
    assert record.history_user == member_a.user
    page = client.get(PROFILE).content.decode()
    assert "You" in page and "+33 6 00 00 00 01" in page and "alice@new.example" in page


def test_only_the_member_editable_fields_change(login, member_a):
    response = login(member_a.user).post(
        PROFILE, details(status="closed", membership_number="1", first_name="Al")
    )

    assert response.status_code == 302
    member_a.refresh_from_db()
    assert member_a.first_name == "Al" and member_a.status == "active"


def test_changes_by_the_back_office_show_without_naming_the_agent(login, member_a, agent_a):
    member_a.phone = "0102030405"
    member_a._history_user = agent_a
    member_a.save()

    html = login(member_a.user).get(PROFILE).content.decode()

    assert "Our team" in html and "agent-a" not in html


def test_a_submission_without_changes_writes_no_history(login, member_a):
    before = member_a.history.count()

    response = login(member_a.user).post(PROFILE, details(), follow=True)

    assert "Nothing changed" in response.content.decode()
    assert member_a.history.count() == before


def test_an_email_of_another_member_of_the_program_is_refused(login, member_a, member_b):
    response = login(member_a.user).post(PROFILE, details(email=member_b.email))

    assert response.status_code == 409
    assert "already uses this email" in response.context["form"].errors["email"][0]
    member_a.refresh_from_db()
    assert member_a.email == "member-a@example.com"


def test_bad_input_is_a_field_error(login, member_a):
    client = login(member_a.user)
    for data, field in ((details(email="nope"), "email"), (details(first_name=""), "first_name")):
        response = client.post(PROFILE, data)
        assert response.status_code == 400 and field in response.context["form"].errors
    assert Member.objects.get(pk=member_a.pk).email == "member-a@example.com"


def test_the_password_can_be_changed(login, member_a):
    client = login(member_a.user)

    page = client.get(reverse("password_change"))
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "correct-horse-battery",
            "new_password1": "Fresh-lilac-2291",
            "new_password2": "Fresh-lilac-2291",
        },
    )

    assert page.status_code == 200 and '<label for="id_old_password"' in page.content.decode()
    assert response.status_code == 302
    member_a.user.refresh_from_db()
    assert member_a.user.check_password("Fresh-lilac-2291")
