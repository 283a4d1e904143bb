"""Exploration policies; every served position gets a logged propensity."""
