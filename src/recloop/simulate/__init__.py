"""A synthetic world of users and items that drives the real API."""
