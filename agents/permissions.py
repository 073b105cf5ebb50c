"""Model permissions the agents app adds to the staff groups (merged by loyalty.roles).

"app_label.codename" strings; a supervisor also gets everything an agent has.

Agents get none here: the admin would show them their colleagues' KPIs and awards, and an
agent sees only their own (on the "My performance" page). Supervisors manage teams,
profiles and scoring rules (new versions only) in the admin, scoped to their programs; KPI
records arrive by the KPI import; award entries are read-only for everyone (the awards job is
their only writer).
"""

AGENT: set[str] = set()
SUPERVISOR: set[str] = {
    *(
        f"agents.{action}_{model}"
        for model in ("team", "agentprofile")
        for action in ("view", "add", "change")
    ),
    "agents.view_kpirecord",
    "agents.view_scoringrule",
    "agents.add_scoringrule",
    "agents.view_awardentry",
    "agents.view_ticketkpirecord",
    "agents.view_historicalticketkpirecord",
    *(f"agents.view_historical{model}" for model in ("team", "agentprofile", "kpirecord", "scoringrule")),
}
