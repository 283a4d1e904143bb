"""Off the request path: experiment reports, power, planning, guardrails, rollout and
rollback, interleaving and shadow reports. Everything here reads logs and snapshots."""
