"""The member's self-service pages: a member only ever sees their own account."""

from django.shortcuts import render

from loyalty.access import role_required
from loyalty.models import Member
from loyalty.roles import Role


@role_required(Role.MEMBER)
def portal_home(request):
    member = Member.objects.select_related("program", "account").get(user=request.user)
    return render(request, "loyalty/portal_home.html", {"member": member})
