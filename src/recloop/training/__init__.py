"""Offline jobs: fit, validate, tune and publish the models the service loads."""
