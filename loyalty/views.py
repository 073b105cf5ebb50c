"""Agent screens: thin views over loyalty selectors and the ledger."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from loyalty.access import get_for_staff_or_404, role_required, scope_to_staff
from loyalty.models import Member
from loyalty.roles import Role


@login_required
def no_role(request):
    return render(request, "loyalty/no_role.html", status=403)


@role_required(Role.AGENT)
def member_search(request):
    members = scope_to_staff(Member.objects.select_related("program", "account"), request.user)[:50]
    return render(request, "loyalty/member_search.html", {"members": members})


@role_required(Role.AGENT)
def member_detail(request, number):
    member = get_for_staff_or_404(
        Member.objects.select_related("program", "account"), request.user, membership_number=number
    )
    return render(request, "loyalty/member_detail.html", {"member": member})
