"""Feature definitions, computed by the same code for training and for serving."""
