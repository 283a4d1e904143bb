"""The request pipeline: stages, budgets, fallbacks, and the service that runs it."""
