"""Fixtures of the whole-system tests: the other apps' object fixtures, reused as they are."""

from tests.agents.conftest import profile_a, team_a  # noqa: F401  (fixtures, registered by import)
from tests.referrals.conftest import code_a, policy_a  # noqa: F401
