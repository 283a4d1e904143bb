"""The benchmarks' shared harness: a server to measure, load to offer it, figures to report.

- ``harness.server``: ``recloop serve`` as its own process on a free port, until ready;
  ``recloop`` commands and one-off JSON calls against it.
- ``harness.postgres``: a throwaway PostgreSQL cluster (fsync on or off) for a store URL.
- ``harness.wrk``: closed-loop load from wrk (C), playing a list of requests once.
- ``harness.openloop``: fixed-rate (open-loop) load from a Python process, with latency
  from each request's scheduled send time.
- ``harness.cpu``: CPU per process tree and for the whole machine, from /proc.
- ``harness.report``: percentiles, the environment, rich tables, the JSON written under
  ``benchmarks/results/`` and the one JSON line printed at the end.
"""
