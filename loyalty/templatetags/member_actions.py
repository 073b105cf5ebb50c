"""`{% member_actions member as actions %}`: other apps' buttons for the staff member page."""

from django import template

from config.nav import member_actions as actions_for

register = template.Library()


@register.simple_tag(takes_context=True)
def member_actions(context, member) -> list[dict]:
    return actions_for(context["request"].user, member)
