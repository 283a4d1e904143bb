"""The body guard on a real socket: no body is read before its key is known, none past its
route's limit, and a refusal closes the connection instead of draining the rest."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from recloop.api.app import create_app
from recloop.api.server import BackgroundServer
from recloop.config import Settings
from tests.factories import settings_with

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024
BATCH_LIMIT = 256 * 1024
HUGE = 500 * 1024 * 1024
ROUTES = [
    ("PUT", "/api/items/i1"),
    ("POST", "/api/items"),
    ("PUT", "/api/users/u1"),
    ("POST", "/api/recommendations/feedback"),
    ("POST", "/api/events"),
    ("PUT", "/api/admin/suggestions/blocklist"),
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_with(
        tmp_path / "data",
        serving={"max_body_bytes": LIMIT},
        ingest={"max_batch_body_bytes": BATCH_LIMIT},
    )


@pytest.fixture
def server(settings: Settings, dev_key: str) -> Iterator[tuple[str, int]]:
    with BackgroundServer(create_app(settings)) as running:
        yield running.host, running.port


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer(sock: socket.socket) -> tuple[int, bytes, bytes]:
    """The status, the head and the body, read until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.lower(), body


def _ask(
    address: tuple[str, int], method: str, path: str, headers: dict[str, str]
) -> tuple[int, bytes, bytes]:
    """Send only a request's head, announcing a body that is never sent, and read the answer:
    a server that waited for the body would time out here."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(_head(method, path, headers))
        return _answer(sock)


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-key", "Basic abc"])
def test_a_body_without_a_known_key_is_refused_before_it_is_read(
    server: tuple[str, int], method: str, path: str, authorization: str | None
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(LIMIT // 2)}
    if authorization:
        headers["Authorization"] = authorization

    status, head, body = _ask(server, method, path, headers)

    assert status == 401
    assert b"connection: close" in head
    assert b"Authorization" in body


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_declared_body_over_the_routes_limit_is_refused_unread(
    server: tuple[str, int], dev_key: str, method: str, path: str
) -> None:
    headers = {"Authorization": f"Bearer {dev_key}", "Content-Length": str(HUGE)}

    status, head, body = _ask(server, method, path, headers)

    assert status == 413
    limit = BATCH_LIMIT if path in ("/api/items", "/api/events") else LIMIT
    assert f"body: at most {limit} bytes".encode() in body
    assert b"connection: close" in head


def test_a_chunked_body_is_cut_off_at_the_limit(server: tuple[str, int], dev_key: str) -> None:
    headers = {"Authorization": f"Bearer {dev_key}", "Transfer-Encoding": "chunked"}
    chunk = b"x" * 8192
    sent = 0
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(_head("PUT", "/api/items/i1", headers))
        try:
            while sent < HUGE:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = _answer(sock)

    assert status == 413
    assert f"body: at most {LIMIT} bytes".encode() in body
    assert sent < 64 * LIMIT  # the server stopped reading; only socket buffers took the rest


def test_a_chunked_body_within_the_limit_reaches_the_route(
    server: tuple[str, int], dev_key: str
) -> None:
    payload = b'{"title": "Chunked", "category": "c1"}'
    headers = {
        "Authorization": f"Bearer {dev_key}",
        "Transfer-Encoding": "chunked",
        "Content-Type": "application/json",
        "Connection": "close",
    }
    with socket.create_connection(server, timeout=5) as sock:
        sock.sendall(_head("PUT", "/api/items/i1", headers))
        for part in (payload[:10], payload[10:]):
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        status, _, body = _answer(sock)

    assert status == 200, body
    assert b'"title":"Chunked"' in body
