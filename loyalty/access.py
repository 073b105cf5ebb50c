"""Who may see what: the one access module every view uses.

Staff (agents, supervisors, admins) see only the programs they are assigned
to (admins see all); a member sees only their own account. An object outside
the caller's scope is a 404, so its existence is not leaked.
"""

from __future__ import annotations

from functools import wraps

from django.contrib.auth.mixins import AccessMixin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.shortcuts import get_object_or_404

from loyalty.models import Member, Program
from loyalty.roles import GROUP_NAMES, STAFF_RANK, Role

_ROLE_BY_GROUP = {name: role for role, name in GROUP_NAMES.items()}


def user_role(user) -> Role | None:
    """The highest role of a user, cached on the user object for the request."""
    if not user.is_authenticated:
        return None
    if not hasattr(user, "_loyalty_role"):
        role = None
        if user.is_superuser:
            role = Role.ADMIN
        else:
            staff_roles = [
                _ROLE_BY_GROUP[n] for n in user.groups.values_list("name", flat=True) if n in _ROLE_BY_GROUP
            ]
            if staff_roles:
                role = max(staff_roles, key=STAFF_RANK.__getitem__)
            elif Member.objects.filter(user=user).exists():
                role = Role.MEMBER
        user._loyalty_role = role
    return user._loyalty_role


def has_role(user, minimum: Role) -> bool:
    """True for the given role or any stronger one. Members only match MEMBER."""
    role = user_role(user)
    if role is None:
        return False
    if minimum == Role.MEMBER:
        return role == Role.MEMBER
    return role in STAFF_RANK and STAFF_RANK[role] >= STAFF_RANK[minimum]


def check_role(request, minimum: Role) -> None:
    if not has_role(request.user, minimum):
        raise PermissionDenied(f"This page needs the {minimum.value} role.")


def role_required(minimum: Role):
    """View decorator: anonymous users go to login, users without the role get a 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            check_role(request, minimum)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class RoleRequiredMixin(AccessMixin):
    """Class-based twin of `role_required`; set `required_role`."""

    required_role: Role = Role.AGENT

    def dispatch(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return self.handle_no_permission()
        check_role(request, self.required_role)
        return super().dispatch(request, *args, **kwargs)


def staff_programs(user) -> QuerySet[Program]:
    """The programs a staff user works on; every program for admins; none for others."""
    role = user_role(user)
    if role == Role.ADMIN:
        return Program.objects.all()
    if role in (Role.AGENT, Role.SUPERVISOR):
        return Program.objects.filter(staff=user)
    return Program.objects.none()


def program_asked(programs: QuerySet[Program], value) -> Program | None:
    """The program of `programs` a query parameter names by id; None for anything else (the
    form that validates the parameter reports what is wrong with it)."""
    value = str(value or "")
    return programs.filter(pk=value).first() if value.isdigit() else None


def scope_to_staff(queryset: QuerySet, user, *, program_field: str = "program") -> QuerySet:
    """Narrow a queryset to rows of the user's programs."""
    if user_role(user) == Role.ADMIN:
        return queryset
    if user_role(user) not in (Role.AGENT, Role.SUPERVISOR):
        return queryset.none()
    return queryset.filter(**{f"{program_field}__staff": user})


def get_for_staff_or_404(queryset: QuerySet, user, *, program_field: str = "program", **lookup) -> Model:
    return get_object_or_404(scope_to_staff(queryset, user, program_field=program_field), **lookup)


def scope_to_member(queryset: QuerySet, user, *, member_field: str = "member") -> QuerySet:
    """Narrow a queryset to rows of the member logged in as `user` (member_field="" for members)."""
    if user_role(user) != Role.MEMBER:
        return queryset.none()
    return queryset.filter(**{f"{member_field}__user" if member_field else "user": user})


def get_for_member_or_404(queryset: QuerySet, user, *, member_field: str = "member", **lookup) -> Model:
    return get_object_or_404(scope_to_member(queryset, user, member_field=member_field), **lookup)


def role_context(request) -> dict:
    """Template context: the user's role, for navigation."""
    user = getattr(request, "user", None)
    role = user_role(user) if user is not None else None
    return {"role": role.value if role else None}
