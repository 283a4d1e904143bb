"""Throwaway PostgreSQL and Redis for the test suite, from Debian's binaries on 127.0.0.1."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

T = TypeVar("T")


class ServerMissing(RuntimeError):
    """The server's binaries are not installed here."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh PostgreSQL cluster; yields a URL of its ``postgres`` database (user ``app``)."""
    with postgres_cluster() as (url, _):
        yield url


@contextmanager
def or_skip(server: AbstractContextManager[T]) -> Iterator[T]:
    """A server context, or the test skipped where the server is not installed (failed
    under CI, which must run every server's tests)."""
    try:
        with server as found:
            yield found
    except ServerMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc}; CI must run the tests that need it")
        pytest.skip(str(exc))


@contextmanager
def postgres_cluster() -> Iterator[tuple[str, Path]]:
    """A fresh PostgreSQL cluster; yields a URL of its ``postgres`` database (user ``app``)
    and its data directory (``postmaster.pid`` names the server's process)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise ServerMissing("PostgreSQL is not installed (Debian package: postgresql)")
    bin_dir = Path(found[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="recloop-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "app", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(data / "server.log"),
                "-w",
                "-o",
                f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data} "
                "-c fsync=off -c max_connections=200",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://app@127.0.0.1:{port}/postgres", data
    finally:
        subprocess.run(
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(data, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    """A fresh Redis that saves nothing; yields the URL of its database 0, stops it by PID."""
    binary = shutil.which("redis-server") or shutil.which("/usr/bin/redis-server")
    if binary is None:
        raise ServerMissing("Redis is not installed (Debian package: redis-server)")
    data = Path(tempfile.mkdtemp(prefix="recloop-redis-"))
    port = _free_port()
    log = data / "redis.log"
    # In the foreground, so the PID is ours to stop and an early exit (port taken) is seen.
    proc = subprocess.Popen(
        [
            binary,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(data),
            "--logfile", str(log),
            "--daemonize", "no",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_redis(port, proc, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def _wait_for_redis(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"redis-server exited with {proc.returncode}: {text[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server on port {port} did not answer PING in 10 s")
        time.sleep(0.05)


def create_database(admin_url: str, name: str) -> str:
    """Create a database on the server of ``admin_url`` and return its URL."""
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + 10
    while True:
        try:
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def recloop_command() -> str:
    """The ``recloop`` script of the running interpreter's environment."""
    script = Path(sys.executable).with_name("recloop")
    return str(script) if script.exists() else (shutil.which("recloop") or "recloop")


def recloop_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This environment without RECLOOP_* settings, pointed at ``data_dir``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env.update(RECLOOP_DATA_DIR=str(data_dir), RECLOOP_CONFIG=str(data_dir / "none.toml"))
    env.update(extra)
    return env


@contextmanager
def recloop_serve(
    data_dir: Path, log_path: Path, *args: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``recloop serve`` in a process of its own on a free port, ready; yields its base URL
    and the process, and terminates it on exit."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [recloop_command(), "serve", "--port", str(port), "--log-level", "warning", *args],
            env=recloop_env(data_dir, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, f"recloop serve {args} did not start"
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            yield url, proc
        finally:
            proc.terminate()
            proc.wait(timeout=30)
