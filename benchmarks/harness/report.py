"""Figures out: percentiles, the run's environment, tables, the JSON file and the JSON line."""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

BENCHMARKS = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCHMARKS.parent
RESULTS_DIR = BENCHMARKS / "results"

#: Wide enough for the widest table when the output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of durations in seconds, in milliseconds."""
    return {
        "p50": percentile(seconds, 0.50) * 1000,
        "p95": percentile(seconds, 0.95) * 1000,
        "p99": percentile(seconds, 0.99) * 1000,
        "max": max(seconds, default=math.nan) * 1000,
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, max and mean of ``values``."""
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": max(values, default=math.nan),
        "mean": sum(values) / len(values) if values else math.nan,
    }


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def git_revision() -> str:
    """This checkout's short revision, ``+dirty`` when tracked files are changed."""
    try:
        rev = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def environment(client: str) -> dict[str, Any]:
    """The machine, the Python, recloop's version and revision, and the load client."""
    try:
        version = importlib.metadata.version("recloop")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "recloop": version,
        "git": git_revision(),
        "client": client,
    }


def table(
    title: str, header: Sequence[str], rows: Iterable[Sequence[Any]], note: str | None = None
) -> None:
    """Print a title line, a table and a note line; the first column left, the others right."""
    out = Table()
    for n, name in enumerate(header):
        out.add_column(name, justify="left" if n == 0 else "right")
    for row in rows:
        out.add_row(*(Text(str(cell)) for cell in row))
    if title:
        console.print(Text(title))
    console.print(out)
    if note:
        console.print(Text(note))


def write_json(document: Mapping[str, Any], path: Path) -> Path:
    """Write ``document`` as indented JSON (keys sorted); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    path.write_bytes(orjson.dumps(document, option=options, default=str))
    return path


def json_line(benchmark: str, figures: Mapping[str, Any]) -> None:
    """Print the run's headline figures as one JSON line, for scripts that collect them."""
    line = {"benchmark": benchmark, **figures}
    print(orjson.dumps(line, option=orjson.OPT_NON_STR_KEYS, default=str).decode(), flush=True)


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Let SIGTERM unwind through the ``finally`` blocks that stop servers and clusters."""
    signal.signal(signal.SIGTERM, _exit)
