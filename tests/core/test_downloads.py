"""Range requests on file downloads: a stored object through its signed URL (seed 000's
family of error bodies) and a backup archive (seed 002's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

CONTENT = bytes(range(256)) * 4


@pytest.fixture(params=["object", "backup"])
async def download(
    request: pytest.FixtureRequest, make_client: Any, tmp_path: Path
) -> tuple[httpx.AsyncClient, str, dict[str, str]]:
    """A client, the URL of a 1024-byte file and the headers to fetch it."""
    client: httpx.AsyncClient = await make_client(backup_dir=tmp_path / "backups")
    if request.param == "object":
        storage = client.app.state.storage  # type: ignore[attr-defined]
        stored = await client.put(storage.presign_put("videos/r/clip.mp4", 60), content=CONTENT)
        assert stored.status_code == 200, stored.text
        return client, storage.presign_get("videos/r/clip.mp4", 60), {}
    (tmp_path / "backups").mkdir(exist_ok=True)
    (tmp_path / "backups" / "vpsapi-backup_range.tar.gz").write_bytes(CONTENT)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    return client, "/api/backup/download/vpsapi-backup_range.tar.gz", headers


@pytest.mark.parametrize("value", ["bytes=abc", "bytes=1e400-", "bytes=100-50", "items=0-5", ""])
async def test_a_range_that_cannot_be_read_is_ignored(
    download: tuple[httpx.AsyncClient, str, dict[str, str]], value: str
) -> None:
    """RFC 9110 §14.2 lets a server ignore such a Range, as nginx does: the whole file
    (Starlette answered 400 "Range header: range must be requested" in plain text)."""
    client, url, headers = download
    response = await client.get(url, headers={**headers, "Range": value})
    assert response.status_code == 200, response.text
    assert response.content == CONTENT


@pytest.mark.parametrize("value", ["bytes=999999999-", "bytes=-0", "bytes=1024-"])
async def test_a_range_past_the_end_is_a_416_in_the_paths_error_body(
    download: tuple[httpx.AsyncClient, str, dict[str, str]], value: str
) -> None:
    client, url, headers = download
    response = await client.get(url, headers={**headers, "Range": value})
    assert response.status_code == 416, response.text
    assert response.headers["content-range"] == "bytes */1024"
    body = response.json()
    assert body["error"] == "Range not satisfiable" and body["requestId"]
    if url.startswith("/api/backup"):
        assert body["detail"] == "Range not satisfiable"  # what seed 002's clients read


async def test_a_satisfiable_range_is_still_served(
    download: tuple[httpx.AsyncClient, str, dict[str, str]],
) -> None:
    client, url, headers = download
    response = await client.get(url, headers={**headers, "Range": "bytes=10-19"})
    assert response.status_code == 206
    assert response.content == CONTENT[10:20]
    assert response.headers["content-range"] == "bytes 10-19/1024"
