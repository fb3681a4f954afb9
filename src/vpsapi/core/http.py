"""Outbound HTTP clients.

They share one TLS context: building one loads the whole CA bundle (tens of ms of CPU),
which a client made per check or per request would otherwise pay every time. HTTP/2
clients keep their own context, since httpcore sets ALPN protocols on the context it is
given at every connect.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Callable
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    # httpx's own default: SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi's bundle.
    return httpx.create_ssl_context()


def outbound_client(**options: Any) -> httpx.AsyncClient:
    """An HTTP/1.1 client with the shared TLS context; options as for httpx.AsyncClient."""
    return httpx.AsyncClient(verify=tls_context(), **options)


class KeptClient:
    """A client kept open across requests to one service (its connections are reused:
    no handshake per request). A client's connections belong to the event loop that
    opened them, so another loop gets a client of its own."""

    def __init__(self, make: Callable[[], httpx.AsyncClient]) -> None:
        self._make = make
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._loop is not loop:
            self._client, self._loop = self._make(), loop
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
