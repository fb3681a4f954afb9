"""Object storage: signed URLs work before expiry, fail after it and when tampered,
on the embedded storage (served by the app) and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from vpsapi.core.storage import LocalStorage, ObjectInfo, S3Storage


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


async def test_local_signed_urls(client: httpx.AsyncClient) -> None:
    storage = client.app.state.storage  # type: ignore[attr-defined]
    assert isinstance(storage, LocalStorage)
    key = "videos/test/clip-one.mp4"
    put_url = storage.presign_put(key, 60)
    assert put_url.startswith("/api/objects/videos/test/clip-one.mp4?expires=")

    stored = await client.put(put_url, content=b"\x00video-bytes")
    assert stored.status_code == 200, stored.text
    assert stored.json() == {"key": key, "size": 12}
    assert await storage.head(key) is not None

    get_url = storage.presign_get(key, 60)
    fetched = await client.get(get_url)
    assert fetched.status_code == 200
    assert fetched.content == b"\x00video-bytes"
    assert fetched.headers["content-type"] == "video/mp4"
    ranged = await client.get(get_url, headers={"Range": "bytes=1-5"})
    assert ranged.status_code == 206
    assert ranged.content == b"video"
    assert (await client.head(get_url)).status_code == 200

    # A download URL cannot upload, and an upload URL cannot download.
    assert (await client.put(get_url, content=b"evil")).status_code == 403
    assert (await client.get(put_url)).status_code == 403
    tampered = [
        get_url.replace("clip-one", "clip-two"),
        _with_query(get_url, expires=str(int(time.time()) + 7200)),
        _with_query(get_url, sig="0" * 64),
        _with_query(get_url, sig=""),
        _with_query(get_url, expires="soon"),
        _with_query(get_url, sig="\u00b9" * 64),  # not ASCII: compare_digest raised
        _with_query(get_url, expires="\u00b2"),  # a digit to isdigit(), not to int()
        _with_query(get_url, expires="9" * 15),  # past any moment a URL is signed for
        get_url.split("?")[0],
    ]
    for url in tampered:
        response = await client.get(url)
        assert response.status_code == 403, url
        assert response.json()["error"] == "Invalid signature"

    expired = storage.presign_get(key, -1)
    response = await client.get(expired)
    assert response.status_code == 403
    assert response.json()["error"] == "Signature expired"

    # Only media is served as itself: uploaded markup stays inert.
    page = "videos/test/page.html"
    assert (await client.put(storage.presign_put(page, 60), content=b"<script>")).status_code == 200
    served = await client.get(storage.presign_get(page, 60))
    assert served.headers["content-type"] == "application/octet-stream"

    # Camera formats by a table of our own, whatever the host's mime database says.
    for name, media_type in (("a.ts", "video/mp2t"), ("b.H264", "video/h264"), ("c.svg", None)):
        stored = f"videos/test/{name}"
        assert (await client.put(storage.presign_put(stored, 60), content=b"x")).is_success
        served = await client.get(storage.presign_get(stored, 60))
        assert served.headers["content-type"] == (media_type or "application/octet-stream")

    missing = await client.get(storage.presign_get("videos/test/none.mp4", 60))
    assert missing.status_code == 404
    assert missing.json()["error"] == "Object not found"

    await storage.delete(key)
    assert await storage.head(key) is None
    assert (await client.get(get_url)).status_code == 404


async def test_local_storage_refuses_keys_outside_its_root(client: httpx.AsyncClient) -> None:
    storage = client.app.state.storage  # type: ignore[attr-defined]
    for key in ("../escape", "/abs", "a//b", "a/./b", "", "a\\b"):
        with pytest.raises(ValueError):
            storage.presign_put(key, 60)


async def test_public_url_makes_local_urls_absolute(make_client: Any) -> None:
    client = await make_client(public_url="https://cams.example.com/")
    url = client.app.state.storage.presign_get("a/b.jpg", 60)  # type: ignore[attr-defined]
    assert url.startswith("https://cams.example.com/api/objects/a/b.jpg?expires=")


async def test_ready_includes_storage(client: httpx.AsyncClient) -> None:
    body = (await client.get("/health/ready")).json()
    assert body["checks"]["storage"] == "healthy"

    async def broken() -> None:
        raise OSError("disk gone")

    client.app.state.storage.check = broken  # type: ignore[attr-defined]
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unhealthy"
    assert "disk gone" in response.json()["errors"]["storage"]


async def _eventually_forbidden(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        for _ in range(100):
            response = await http.get(url)
            if response.status_code != 200:
                return response
            await asyncio.sleep(0.1)
    return response


async def test_s3_signed_urls(make_client: Any, seaweed: Any, s3_bucket: str) -> None:
    client = await make_client(**seaweed.settings(s3_bucket))
    storage = client.app.state.storage  # type: ignore[attr-defined]
    assert isinstance(storage, S3Storage)
    ready = await client.get("/health/ready")
    assert ready.json()["checks"]["storage"] == "healthy", ready.text

    key = "videos/test/clip.mp4"
    async with httpx.AsyncClient() as http:
        put = await http.put(storage.presign_put(key, 60), content=b"s3-video")
        assert put.status_code == 200, put.text
        assert await storage.head(key) == ObjectInfo(size=8)

        get_url = storage.presign_get(key, 60)
        fetched = await http.get(get_url)
        assert fetched.status_code == 200
        assert fetched.content == b"s3-video"

        assert (await http.put(get_url, content=b"evil")).status_code == 403
        # Served as the name says, not as the uploader said; anything but media downloads.
        html = {"Content-Type": "text/html"}
        assert (
            await http.put(storage.presign_put(key, 60), content=b"<b>", headers=html)
        ).is_success
        assert (await http.get(get_url)).headers["content-type"] == "video/mp4"
        page = "videos/test/page.html"
        assert (
            await http.put(storage.presign_put(page, 60), content=b"<b>", headers=html)
        ).is_success
        served = await http.get(storage.presign_get(page, 60))
        assert served.headers["content-type"] == "application/octet-stream"
        assert served.headers["content-disposition"] == "attachment"
        await storage.delete(page)
        for url in (
            get_url.replace("clip.mp4", "other.mp4"),
            _with_query(get_url, **{"X-Amz-Expires": "7200"}),
            _with_query(get_url, **{"X-Amz-Signature": "0" * 64}),
        ):
            assert (await http.get(url)).status_code == 403, url
        wrong_key = seaweed.client(secret_key="not-the-secret").generate_presigned_url(
            "get_object", Params={"Bucket": s3_bucket, "Key": key}, ExpiresIn=60
        )
        assert (await http.get(wrong_key)).status_code == 403

    expired = await _eventually_forbidden(storage.presign_get(key, 1))
    assert expired.status_code == 403
    assert "expired" in expired.text

    await storage.delete(key)
    assert await storage.head(key) is None


async def test_s3_missing_bucket_is_not_ready(make_client: Any, seaweed: Any) -> None:
    client = await make_client(**seaweed.settings("no-such-bucket-here"))
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == "unhealthy"


def test_signed_urls_are_redacted_in_logs() -> None:
    from vpsapi.core.logging import redact

    local = "/api/objects/videos/a.mp4?expires=1700000000&sig=" + "ab" * 32
    s3 = "http://s3/b/a.mp4?X-Amz-Algorithm=AWS4&X-Amz-Signature=" + "cd" * 32
    assert redact(local).endswith("&sig=****")
    assert redact(s3).endswith("&X-Amz-Signature=****")
