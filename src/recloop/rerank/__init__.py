"""Re-ranking rules and the mandatory eligibility filters."""
