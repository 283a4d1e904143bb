"""recloop: a self-hostable recommendation platform built as a feedback loop."""

__version__ = "0.1.0"
