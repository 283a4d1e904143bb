"""Event validation, idempotency and acceptance; the same rules for the API and imports."""
