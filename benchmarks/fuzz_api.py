"""How many generated requests reach the API without a server error, on both stores?

Runs the schemathesis suite of ``tests/integration/api/test_fuzz.py`` (every operation of the
OpenAPI document, on SQLite and on PostgreSQL, and call sequences along its links) with
many more examples than CI uses, and prints what ran and what failed.

    .venv/bin/python benchmarks/fuzz_api.py --examples 1000 --stateful-examples 200
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per operation")
    parser.add_argument(
        "--stateful-examples", type=int, default=200, help="call sequences per store"
    )
    args = parser.parse_args()
    env = {
        **os.environ,
        "RECLOOP_FUZZ_EXAMPLES": str(args.examples),
        "RECLOOP_FUZZ_STATEFUL_EXAMPLES": str(args.stateful_examples),
    }
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/integration/api/test_fuzz.py"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    took = time.monotonic() - started
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else run.stderr[-500:]
    failed = re.findall(r"^FAILED (.+)$", run.stdout, re.MULTILINE)
    print(f"examples per operation: {args.examples}; call sequences per store: "
          f"{args.stateful_examples}")  # fmt: skip
    print(f"pytest: {summary} ({took:.0f} s)")
    for line in failed:
        print(f"  FAILED {line}")
    if run.returncode not in (0, 1):
        print(run.stdout[-3000:], run.stderr[-3000:])
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main())
