"""Offline metrics, protocols, estimators and reports."""
