"""SENTRY_DSN: an unhandled error reaches Sentry, and no personal data goes with it.

The receiver is a local HTTP server taking what the SDK posts to a DSN's envelope endpoint."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sentry_sdk
from fastapi import APIRouter
from sqlalchemy import text

from support import free_port
from vpsapi.core.db import SessionDep


class _Envelopes(ThreadingHTTPServer):
    received: list[dict[str, Any]]


class _EnvelopeHandler(BaseHTTPRequestHandler):
    server: _Envelopes

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        # An envelope: a header line, then item header and payload lines.
        for line in body.splitlines()[1:]:
            item = json.loads(line)
            if "exception" in item:
                self.server.received.append(item)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sentry_receiver() -> Iterator[_Envelopes]:
    server = _Envelopes(("127.0.0.1", free_port()), _EnvelopeHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    sentry_sdk.get_client().close()  # the SDK is process-wide: later tests send nothing
    sentry_sdk.get_global_scope().set_client(None)
    server.shutdown()
    server.server_close()


async def test_an_unhandled_error_is_reported_without_personal_data(
    make_client: Any, sentry_receiver: _Envelopes
) -> None:
    port = sentry_receiver.server_address[1]
    client = await make_client(sentry_dsn=f"http://publickey@localhost:{port}/1")
    router = APIRouter()

    email = "alice" + "@example.com"

    @router.post("/api/boom-for-sentry")
    async def boom(session: SessionDep) -> None:
        # A query with a personal value, and a Redis-free breadcrumb trail before the error.
        await session.execute(text("SELECT :email"), {"email": email})
        raise RuntimeError("boom for sentry")

    client.app.include_router(router)
    # Built here, so that the source lines sent as the stack's context do not hold them.
    password, cookie, address = ("hunter" + "2", "cookie" + "-value", "203.0.113." + "9")
    response = await client.post(
        "/api/boom-for-sentry?access_token=token-in-url",
        json={"password": password},
        headers={"Cookie": f"session={cookie}", "X-Forwarded-For": address},
    )
    assert response.status_code == 500
    sentry_sdk.get_client().flush(timeout=10)

    assert sentry_receiver.received, "no event reached the receiver"
    sent = json.dumps(sentry_receiver.received)
    assert "boom for sentry" in sent
    assert "/api/boom-for-sentry" in sent  # the request is named, without what identifies
    assert "SELECT" in sent  # the query is a breadcrumb, without its parameter
    for personal in (password, cookie, address, email, "token-in-url", "127.0.0.1"):
        assert personal not in sent, personal
