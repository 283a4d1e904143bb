"""Offline data: training-data snapshots of the store, and cleaning of their events."""
