"""Hostile bodies against ``recloop serve`` as it runs: 500 MB sent without a key, or past
the limit with one, leave the server's peak memory where it was and ``/healthz`` quick."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import recloop_serve

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

HUGE = 500 * 1024 * 1024
#: How much the server's peak resident memory may grow while the bodies are sent.
GROWTH_BOUND = 50 * 1024 * 1024


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int, str]]:
    data_dir = tmp_path / "data"
    with recloop_serve(data_dir, tmp_path / "server.log") as (url, proc):
        yield url, proc.pid, (data_dir / "dev-key").read_text().strip()


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def _flood(url: str, path: str, headers: dict[str, str], sent: list[int]) -> None:
    """Stream a chunked body of HUGE bytes until done or the server closes the connection."""
    host, port = url.removeprefix("http://").split(":")
    head = "\r\n".join(
        [f"PUT {path} HTTP/1.1", "Host: test", "Transfer-Encoding: chunked"]
        + [f"{k}: {v}" for k, v in headers.items()]
    )
    chunk = b"[" * (1024 * 1024)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    total = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n\r\n")
        try:
            while total < HUGE:
                sock.sendall(framed)
                total += len(chunk)
        except OSError:
            pass
    sent.append(total)


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "valid key"])
def test_two_500mb_bodies_leave_peak_memory_and_health_alone(
    served: tuple[str, int, str], keyed: bool
) -> None:
    url, pid, key = served
    headers = {"Authorization": f"Bearer {key}"} if keyed else {}
    before = _peak_rss(pid)
    sent: list[int] = []
    floods = [
        threading.Thread(target=_flood, args=(url, path, headers, sent))
        for path in ("/api/items/i1", "/api/users/u1")
    ]
    for flood in floods:
        flood.start()
    started = time.monotonic()
    health = httpx.get(f"{url}/healthz", timeout=10)
    took = time.monotonic() - started
    for flood in floods:
        flood.join(timeout=120)

    assert health.status_code == 200
    assert took < 3.0  # a stalled event loop took 6.6 s
    assert all(total < HUGE // 10 for total in sent), sent  # refused long before the end
    assert _peak_rss(pid) - before < GROWTH_BOUND
