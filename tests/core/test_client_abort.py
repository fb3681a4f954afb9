"""A client that goes away while sending its body, against a real server process (its
metrics and log are read)."""

from __future__ import annotations

import re
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.multiprocess

REQUESTS_LINE = re.compile(
    r'^vpsapi_http_requests_total\{method="POST",route="([^"]+)",status="(\d+)"\} (\S+)$',
    re.MULTILINE,
)


def _posts(base_url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(base_url + "/metrics", timeout=10).text
    return {(route, status): float(n) for route, status, n in REQUESTS_LINE.findall(text)}


def _send_and_leave(base_url: str, head: str, body: bytes) -> None:
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        time.sleep(0.2)  # the server is reading the body when the client goes


def test_a_client_gone_mid_body_is_a_499_not_a_server_error(
    settings_factory: Any, server_factory: Any
) -> None:
    """A dropped connection (a phone losing signal) or a broken chunked body was logged as
    `unhandled_error` with a traceback and counted as a 500 on routes reading the body
    themselves (a 400 where FastAPI reads it): a client abort is nginx's 499, as an AI chat
    whose client left."""
    server = server_factory(settings_factory())
    login = httpx.post(
        server.base_url + "/api/v1/auth/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    token = login.json()["data"]["accessToken"]
    common = f"Host: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    for path in ("/api/jobs", "/api/hello/register", "/api/configs"):  # by hand, by FastAPI
        head = f"POST {path} HTTP/1.1\r\n{common}Content-Length: 1000\r\n"
        _send_and_leave(server.base_url, head, b'{"a":')
    chunked = f"POST /api/jobs HTTP/1.1\r\n{common}Transfer-Encoding: chunked\r\n"
    _send_and_leave(server.base_url, chunked, b'5\r\n{"a":\r\nzz\r\n')

    expected = {
        ("/api/v1/auth/login", "200"): 1.0,
        ("/api/jobs", "499"): 2.0,
        ("/api/hello/register", "499"): 1.0,
        ("/api/configs", "499"): 1.0,
    }
    deadline = time.monotonic() + 20
    while (counts := _posts(server.base_url)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts == expected
    server.stop()
    log = server.log_path.read_text()
    assert '"status":499' in log
    for sign in ("Traceback", "ClientDisconnect", "unhandled_error", '"level":"error"'):
        assert sign not in log, sign
