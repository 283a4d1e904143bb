"""Experiments: assignment, interleaving, analysis, rollout and rollback."""
