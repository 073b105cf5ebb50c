"""Model permissions the disputes app adds to the staff groups (merged by loyalty.roles).

"app_label.codename" strings; a supervisor also gets everything an agent has.
The admin shows tickets read-only (their state moves through the services);
supervisors also set each program's dispute policy there.
"""

AGENT: set[str] = {
    "disputes.view_dispute",
    "disputes.view_historicaldispute",
    "disputes.view_comment",
    "disputes.view_disputepause",
    "disputes.view_adjustmentrequest",
    "disputes.view_historicaladjustmentrequest",
    "disputes.view_disputepolicy",
    "disputes.view_historicalcomment",
}
SUPERVISOR: set[str] = {
    "disputes.add_disputepolicy",
    "disputes.change_disputepolicy",
    "disputes.view_historicaldisputepolicy",
}
