"""Candidate sources and what they are built from."""
