"""Weak ETags on every successful GET under /api (seed 004: "ETags für Client-Side Caching").

A 200 answer sent in one piece gets `ETag: W/"<hash of the body>"` and, unless it chose its
own, `Cache-Control: private, max-age=0, must-revalidate`; a request whose If-None-Match
names that tag gets 304 with no body. Streams (SSE, downloads sent in parts) pass untagged.
It sits inside the compression layer, so the tag names the content, not its encoding.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CACHE_CONTROL = "private, max-age=0, must-revalidate"
# Answers this large are gzipped for clients that accept it (`NegotiatedGZip`), so their
# 200 says `Vary: Accept-Encoding`; a 304 must say what the 200 would (RFC 9110 15.4.5).
COMPRESSED_FROM_BYTES = 1024


def weak_etag(body: bytes) -> str:
    return f'W/"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in tags or etag.removeprefix("W/") in tags


class ETagMiddleware:
    def __init__(self, app: ASGIApp, *, prefix: str = "/api") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        if_none_match = Headers(scope=scope).get("if-none-match", "")
        held: Message | None = None  # a 200's start, until its body shows it is one piece

        async def send_tagged(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                if message["status"] == 200 and "etag" not in headers:
                    held = message
                    return
            elif held is not None:
                start, held = held, None
                if message.get("more_body", False):  # a stream: sent as it comes
                    await send(start)
                else:
                    await self._send_tagged(start, message, if_none_match, send)
                    return
            await send(message)

        await self.app(scope, receive, send_tagged)

    @staticmethod
    async def _send_tagged(start: Message, body: Message, if_none_match: str, send: Send) -> None:
        etag = weak_etag(body.get("body", b""))
        headers = MutableHeaders(raw=list(start.get("headers", [])))
        headers["etag"] = etag
        if "cache-control" not in headers:
            headers["cache-control"] = CACHE_CONTROL
        if if_none_match and etag_matches(if_none_match, etag):
            del headers["content-length"]
            del headers["content-type"]
            if len(body.get("body", b"")) >= COMPRESSED_FROM_BYTES:
                headers.add_vary_header("Accept-Encoding")
            await send({"type": "http.response.start", "status": 304, "headers": headers.raw})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({**start, "headers": headers.raw})
        await send(body)
