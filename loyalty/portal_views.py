"""The member's self-service pages: a member only ever sees their own account."""

from django.shortcuts import render

from loyalty.access import get_for_member_or_404, role_required
from loyalty.models import Member
from loyalty.roles import Role
from loyalty.selectors import member_overview


@role_required(Role.MEMBER)
def portal_home(request):
    # The member row is looked up through the login, never from the URL.
    member = get_for_member_or_404(
        Member.objects.select_related("program", "account", "tier"), request.user, member_field=""
    )
    overview = member_overview(account=member.account, recent=10)
    return render(request, "loyalty/portal_home.html", {"member": member, "overview": overview})
