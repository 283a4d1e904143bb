"""A throwaway PostgreSQL cluster for a benchmark's store, from Debian's binaries.

The test suite's cluster (``tests/servers.py``) does not fit: it is started with
``-c fsync=off`` on the command line, which no setting can override, and it does not say
its postmaster's PID, which the CPU accounting watches. A benchmark of durable ingestion
needs fsync on.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.server import HOST, BenchError, free_port

SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
)


@dataclass(frozen=True)
class PostgresCluster:
    """A running throwaway cluster."""

    admin_url: str  # its ``postgres`` database, user ``app``
    postmaster_pid: int


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


def _postgres_bin() -> Path:
    def version(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise BenchError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return Path(initdb).parent


def _run(args: list[str]) -> None:
    subprocess.run(_as_postgres(args), check=True, capture_output=True, timeout=120)


@contextlib.contextmanager
def postgres_cluster(fsync: bool) -> Iterator[PostgresCluster]:
    """A cluster on 127.0.0.1 with ``fsync`` on or off and ``synchronous_commit=on``."""
    bin_dir = _postgres_bin()
    data = Path(tempfile.mkdtemp(prefix="recloop-bench-pg-"))
    started = False
    try:
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
        port = free_port()
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", "app", "--auth=trust", "-E", "UTF8"])
        options = (
            f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories={data} "
            f"-c fsync={'on' if fsync else 'off'} -c synchronous_commit=on "
            "-c max_connections=200"
        )
        pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log")]
        _run([*pg_ctl, "-w", "-o", options, "start"])
        started = True
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        yield PostgresCluster(f"postgresql+psycopg://app@{HOST}:{port}/postgres", pid)
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(data, ignore_errors=True)


def plain_url(url: str) -> str:
    """The URL psycopg takes (without SQLAlchemy's driver name)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the cluster; its URL."""
    import psycopg

    with psycopg.connect(plain_url(admin_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def postgres_settings(url: str) -> dict[str, str]:
    """The server's version and the settings that decide what a commit costs."""
    import psycopg

    settings: dict[str, str] = {}
    with psycopg.connect(plain_url(url)) as conn:
        for name in SETTINGS:
            row = conn.execute(f"SHOW {name}").fetchone()
            settings[name] = "?" if row is None else str(row[0])
    return settings
