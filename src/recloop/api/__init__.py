"""The HTTP layer only: routes, request and response schemas, auth, error mapping."""
