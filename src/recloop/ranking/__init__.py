"""Rankers: turn a feature matrix into scores."""
