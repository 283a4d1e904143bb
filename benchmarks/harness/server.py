"""``recloop serve`` as its own process on a free port, and one-off calls to it."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from harness.cpu import process_tree_cpu_s

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 20.0


class BenchError(RuntimeError):
    """The benchmark could not run or its setup failed."""


@dataclass(frozen=True)
class Target:
    """Where the service listens and the API key to send."""

    host: str
    port: int
    key: str

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class Server:
    """A running ``recloop serve``."""

    pid: int
    target: Target
    log: Path
    startup_s: float  # from the start of the process to its first ready answer


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def recloop_command() -> list[str]:
    """The ``recloop`` command next to this Python (the project's virtual environment)."""
    script = Path(sys.executable).with_name("recloop")
    if script.exists():
        return [str(script)]
    found = shutil.which("recloop")
    if found is None:
        raise BenchError("the `recloop` command is not installed next to this Python")
    return [found]


def service_env(
    data_dir: Path, store_url: str | None = None, config: Path | None = None
) -> dict[str, str]:
    """The environment of a recloop command: this data dir and store, no stray settings.

    Every ``RECLOOP_*`` variable is dropped; without ``config`` the settings are the defaults
    (``RECLOOP_CONFIG`` names a file that does not exist, so no recloop.toml is read).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECLOOP_")}
    env["RECLOOP_DATA_DIR"] = str(data_dir)
    env["RECLOOP_CONFIG"] = str(config or data_dir / "no-such-recloop.toml")
    if store_url is not None:
        env["RECLOOP_STORE_URL"] = store_url
    return env


def run_recloop(args: list[str], data_dir: Path, store_url: str | None = None) -> str:
    """Run a recloop command to completion on this data dir and store; its stdout."""
    done = subprocess.run(
        [*recloop_command(), *args],
        env=service_env(data_dir, store_url),
        cwd=data_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"recloop {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def http_json(
    target: Target, method: str, path: str, body: Any = None, timeout: float = 60.0
) -> tuple[int, Any]:
    """One request on a fresh connection (setup and checks, not measurements)."""
    conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json"}
        conn.request(method, path, None if body is None else orjson.dumps(body), headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        return response.status, orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return response.status, data.decode(errors="replace")


@contextlib.contextmanager
def recloop_server(
    data_dir: Path,
    *,
    store_url: str | None = None,
    config: Path | None = None,
    key: str | None = None,
    start_timeout_s: float = 60.0,
    workers: int = 1,
) -> Iterator[Server]:
    """``recloop serve`` on a free loopback port until the context exits.

    It runs in ``data_dir`` with the environment of ``service_env`` and logs warnings to
    ``data_dir/server.log``. It is up once ``/readyz`` answers 200 (its store answers); with
    ``workers`` above 1, once every worker has also finished starting (the process tree is
    idle: ``/readyz`` is answered by whichever worker is up first). The key sent is ``key``,
    or else the dev key the server wrote into ``data_dir``.
    """
    port = free_port()
    log = data_dir / "server.log"
    command = [*recloop_command(), "serve", "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)]
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--log-level", "warning"],
            env=service_env(data_dir, store_url, config),
            cwd=data_dir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        probe = Target(HOST, port, "")
        deadline = started + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise BenchError(f"recloop serve exited ({proc.returncode}):\n{tail(log)}")
            with contextlib.suppress(OSError):
                if http_json(probe, "GET", "/readyz", timeout=2)[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise BenchError(f"recloop serve was not ready in time:\n{tail(log)}")
            time.sleep(0.1)
        if workers > 1:
            _wait_idle(proc.pid, deadline)
        startup_s = time.monotonic() - started
        if key is None:
            key = (data_dir / "dev-key").read_text().strip()
        yield Server(proc.pid, Target(HOST, port, key), log, startup_s)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _wait_idle(pid: int, deadline: float, cores: float = 0.1) -> None:
    """Until the server's processes together use under ``cores`` over half a second."""
    while time.monotonic() < deadline:
        before = process_tree_cpu_s(pid)
        time.sleep(0.5)
        if (process_tree_cpu_s(pid) - before) / 0.5 < cores:
            return
    raise BenchError("recloop serve's workers were still starting at the deadline")
