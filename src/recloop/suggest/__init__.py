"""Query suggestions: text normalization and safety for the suggestion surface."""
