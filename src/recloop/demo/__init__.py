"""``recloop demo``: a simulated world driving the real service, and its in-process transport."""
