"""Metrics, drift and alerts."""
