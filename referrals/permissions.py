"""Model permissions the referrals app adds to the staff groups (merged by loyalty.roles).

"app_label.codename" strings; a supervisor also gets everything an agent has.
Agents read referrals in the admin; decisions (approve, reject, attribute) go
through the back-office screens, whose services post the rewards.
"""

_MODELS = ("referralpolicy", "referralcode", "referral", "referralclick", "referralsignal", "devicesighting")

AGENT: set[str] = {
    *(f"referrals.view_{model}" for model in _MODELS),
    "referrals.view_historicalreferral",
    "referrals.view_historicalreferralcode",
}
# Supervisors own the program's referral scheme, and may switch a member's code off.
SUPERVISOR: set[str] = {
    "referrals.add_referralpolicy",
    "referrals.change_referralpolicy",
    "referrals.view_historicalreferralpolicy",
    "referrals.change_referralcode",
}
