"""Outbound HTTP clients.

They share one TLS context: building one loads the whole CA bundle (tens of ms of CPU),
which a client made per check or per request would otherwise pay every time. HTTP/2
clients keep their own context, since httpcore sets ALPN protocols on the context it is
given at every connect.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    # httpx's own default: SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi's bundle.
    return httpx.create_ssl_context()


def outbound_client(**options: Any) -> httpx.AsyncClient:
    """An HTTP/1.1 client with the shared TLS context; options as for httpx.AsyncClient."""
    return httpx.AsyncClient(verify=tls_context(), **options)
