"""Cloud videos: camera registers a clip → uploads through the presigned URL → confirms;
the owner lists signed playback URLs (seed-003 body); others get 403."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from vpsapi.core.db import utcnow
from vpsapi.devices import cloud
from vpsapi.devices.models import CloudVideo

DAY = {"startTime": "2024-05-01T00:00:00Z", "endTime": "2024-05-01T23:59:59Z"}


async def owned_device(client: httpx.AsyncClient, user_id: str, auth: dict[str, str]) -> str:
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": user_id}
    vid = str((await client.post("/api/hello/register", json=body)).json()["virtualId"])
    bound = await client.post("/api/devices", json={"vid": vid}, headers=auth)
    assert bound.status_code == 201, bound.text
    return vid


async def transfer(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Local storage URLs point at the app under test; S3 URLs at the real server."""
    if url.startswith(str(client.base_url)):
        return await client.request(method, url, content=content, headers=headers)
    async with httpx.AsyncClient() as http:
        return await http.request(method, url, content=content, headers=headers)


@pytest.fixture(params=["embedded", "s3"])
async def client(request: pytest.FixtureRequest, make_client: Any) -> httpx.AsyncClient:
    """Every test here runs on the embedded storage and on a real S3 server."""
    if request.param == "embedded":
        app_client: httpx.AsyncClient = await make_client()
        return app_client
    seaweed = request.getfixturevalue("seaweed")
    app_client = await make_client(**seaweed.settings(request.getfixturevalue("s3_bucket")))
    return app_client


async def test_upload_confirm_list_and_play(client: httpx.AsyncClient, create_user: Any) -> None:
    alice, alice_auth = await create_user()
    _, bob_auth = await create_user()
    vid = await owned_device(client, alice["id"], alice_auth)

    clip = {
        "deviceId": vid,
        "filename": "clip-0001.mp4",
        "startTime": "2024-05-01T10:00:00Z",
        "duration": 15,
        "alarmType": "motion",
        "thumbnail": True,
    }
    registered = await client.post("/api/cloud/videos", json=clip)
    assert registered.status_code == 201, registered.text
    upload = registered.json()
    assert set(upload) == {"videoId", "uploadUrl", "thumbnailUploadUrl", "expiresIn"}
    assert upload["expiresIn"] == 900
    assert upload["uploadUrl"].startswith("http")

    # Not confirmed yet: nothing to play, and confirming before the upload is refused.
    listed = await client.post(
        "/api/cloud/videos/urls", json={"deviceId": vid, **DAY}, headers=alice_auth
    )
    assert listed.json() == {"urls": []}
    early = await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")
    assert early.status_code == 409
    assert early.json()["error"] == "Upload not found"

    put = await transfer(client, "PUT", upload["uploadUrl"], b"mp4-bytes-of-a-clip")
    assert put.status_code == 200, put.text
    thumb = await transfer(client, "PUT", upload["thumbnailUploadUrl"], b"jpeg")
    assert thumb.status_code == 200, thumb.text
    confirmed = await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json() == {"success": True, "videoId": upload["videoId"], "fileSize": 19}

    listed = await client.post(
        "/api/cloud/videos/urls", json={"deviceId": vid, **DAY}, headers=alice_auth
    )
    assert listed.status_code == 200, listed.text
    [item] = listed.json()["urls"]
    assert set(item) == {"filename", "url", "startTime", "duration", "thumbnail", "alarmType"}
    assert item["filename"] == "clip-0001.mp4"
    assert item["startTime"] == "2024-05-01T10:00:00.000Z"
    assert item["duration"] == 15
    assert item["alarmType"] == "motion"
    played = await transfer(client, "GET", item["url"])
    assert played.status_code == 200
    assert played.content == b"mp4-bytes-of-a-clip"
    assert (await transfer(client, "GET", item["thumbnail"])).content == b"jpeg"
    # A playback URL does not allow overwriting the clip.
    assert (await transfer(client, "PUT", item["url"], b"evil")).status_code == 403

    # Only owners: another user, an unknown device and no token are all refused.
    bobs = await client.post(
        "/api/cloud/videos/urls", json={"deviceId": vid, **DAY}, headers=bob_auth
    )
    assert bobs.status_code == 403
    assert bobs.json()["error"] == "Access denied"
    unknown = await client.post(
        "/api/cloud/videos/urls", json={"deviceId": "VENOSUCHDEVICE1", **DAY}, headers=alice_auth
    )
    assert unknown.status_code == 403
    anonymous = await client.post("/api/cloud/videos/urls", json={"deviceId": vid, **DAY})
    assert anonymous.status_code == 401


async def test_time_range_and_units(client: httpx.AsyncClient, create_user: Any) -> None:
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    # 2024-05-01T08:00Z as epoch seconds, 12:00Z as epoch milliseconds, 20:00Z naive.
    starts = [1714550400, 1714564800000, "2024-05-01 20:00:00"]
    for index, start in enumerate(starts):
        clip = {"deviceId": vid, "filename": f"c{index}.mp4", "startTime": start}
        upload = (await client.post("/api/cloud/videos", json=clip)).json()
        assert "thumbnailUploadUrl" not in upload
        assert (await transfer(client, "PUT", upload["uploadUrl"], b"x")).status_code == 200
        assert (
            await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")
        ).status_code == 200

    async def listed(start: Any, end: Any) -> list[str]:
        body = {"deviceId": vid, "startTime": start, "endTime": end}
        response = await client.post("/api/cloud/videos/urls", json=body, headers=auth)
        assert response.status_code == 200, response.text
        return [item["startTime"] for item in response.json()["urls"]]

    assert await listed(*DAY.values()) == [
        "2024-05-01T08:00:00.000Z",
        "2024-05-01T12:00:00.000Z",
        "2024-05-01T20:00:00.000Z",
    ]
    assert await listed("2024-05-01T09:00:00Z", 1714564800) == ["2024-05-01T12:00:00.000Z"]
    assert await listed("2024-05-01T21:00:00+02:00", "2024-05-01T22:00:00+02:00") == [
        "2024-05-01T20:00:00.000Z"
    ]


async def test_bad_input_is_400(client: httpx.AsyncClient, create_user: Any) -> None:
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    good = {"deviceId": vid, "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    for change in (
        {"deviceId": None},
        {"deviceId": ""},
        {"filename": "../etc/passwd"},
        {"filename": "a/b.mp4"},
        {"filename": ""},
        {"startTime": "yesterday"},
        {"startTime": None},
        {"duration": -1},
        {"duration": "long"},
        {"duration": True},  # lax mode read true as 1 and "yes" or 1 as true
        {"thumbnail": "yes"},
        {"thumbnail": 1},
        {"alarmType": "x" * 33},
        {"alarmType": "motion detected"},
    ):
        response = await client.post("/api/cloud/videos", json={**good, **change})
        assert response.status_code == 400, change
        assert response.json()["error"]
    for body in (
        {"deviceId": vid},
        {"deviceId": vid, "startTime": "2024-05-02T00:00:00Z", "endTime": "2024-05-01T00:00:00Z"},
        {"deviceId": vid, "startTime": "nope", "endTime": "2024-05-01T00:00:00Z"},
        [],
    ):
        response = await client.post("/api/cloud/videos/urls", json=body, headers=auth)
        assert response.status_code == 400, body
        assert response.json()["error"]
    unknown = await client.post("/api/cloud/videos", json={**good, "deviceId": "VENOSUCHDEVICE1"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "Device not found"
    missing = await client.post("/api/cloud/videos/0123456789abcdef/confirm")
    assert missing.status_code == 404
    assert missing.json()["error"] == "Video not found"


async def test_times_out_of_range_are_400_and_store_nothing(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """Valid ISO-8601 whose UTC time (or end, with the duration) leaves years 1-9999."""
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    for times in (
        {"startTime": "0001-01-01T00:00:00+05:00", "endTime": "2030-01-01"},
        {"startTime": "2024-01-01", "endTime": "9999-12-31T23:59:59-01:00"},
    ):
        body = {"deviceId": vid, **times}
        response = await client.post("/api/cloud/videos/urls", json=body, headers=auth)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "Validation failed"
        assert response.json()["details"][0]["field"] in times
    clip = {"deviceId": vid, "filename": "late.mp4"}
    for late in (
        {"startTime": "9999-12-31T23:59:59Z", "duration": 30},
        {"startTime": "9999-12-31T23:30:00-01:00"},
    ):
        response = await client.post("/api/cloud/videos", json={**clip, **late})
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "Validation failed"
    async with client._transport.app.state.db.session() as session:  # type: ignore[attr-defined]
        assert await session.scalar(select(func.count()).select_from(CloudVideo)) == 0
    # The last representable moment itself is fine.
    edge = {**clip, "startTime": "9999-12-31T23:59:00Z", "duration": 59}
    assert (await client.post("/api/cloud/videos", json=edge)).status_code == 201


async def test_camera_endpoints_need_the_device_token_when_set(
    make_client: Any,
) -> None:
    client = await make_client(device_api_token="cam-fleet-token")
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": "u1"}
    headers = {"X-Device-Token": "cam-fleet-token"}
    vid = (await client.post("/api/hello/register", json=body, headers=headers)).json()["virtualId"]
    clip = {"deviceId": vid, "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    assert (await client.post("/api/cloud/videos", json=clip)).status_code == 401
    registered = await client.post("/api/cloud/videos", json=clip, headers=headers)
    assert registered.status_code == 201
    video_id = registered.json()["videoId"]
    assert (await client.post(f"/api/cloud/videos/{video_id}/confirm")).status_code == 401


async def test_unconfirmed_expired_uploads_are_cleaned(client: httpx.AsyncClient) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": "u2"}
    vid = (await client.post("/api/hello/register", json=body)).json()["virtualId"]
    ids = []
    for name in ("stale.mp4", "fresh.mp4", "kept.mp4"):
        clip = {"deviceId": vid, "filename": name, "startTime": "2024-05-01T10:00:00Z"}
        upload = (await client.post("/api/cloud/videos", json=clip)).json()
        put = await transfer(client, "PUT", upload["uploadUrl"], b"partial")
        assert put.status_code == 200
        ids.append(upload["videoId"])
    stale, fresh, kept = ids
    assert (await client.post(f"/api/cloud/videos/{kept}/confirm")).status_code == 200
    long_ago = utcnow() - timedelta(days=1)
    async with app.state.db.session() as session:
        await session.execute(
            update(CloudVideo)
            .where(CloudVideo.id.in_([stale, kept]))
            .values(upload_expires_at=long_ago)
        )
    async with app.state.db.session() as session:
        assert await cloud.delete_expired_uploads(session, app.state.storage) == 1
    async with app.state.db.session() as session:
        assert await cloud.delete_expired_uploads(session, app.state.storage) == 0
        remaining = set((await session.execute(select(CloudVideo.id))).scalars())
    assert stale not in remaining
    assert {fresh, kept} <= remaining
    assert await app.state.storage.head(f"videos/{vid}/{stale}/stale.mp4") is None


async def test_clips_past_retention_are_deleted_with_their_objects(
    client: httpx.AsyncClient,
) -> None:
    app = client._transport.app  # type: ignore[attr-defined]
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": "u3"}
    vid = (await client.post("/api/hello/register", json=body)).json()["virtualId"]
    ids = []
    for name in ("old.mp4", "new.mp4"):
        # The camera's clock says long ago for both: only the server's stamp counts.
        clip = {"deviceId": vid, "filename": name, "startTime": "2020-01-01T00:00:00Z"}
        upload = (await client.post("/api/cloud/videos", json=clip)).json()
        assert (await transfer(client, "PUT", upload["uploadUrl"], b"clip")).status_code == 200
        assert (
            await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")
        ).status_code == 200
        ids.append(upload["videoId"])
    old, new = ids
    async with app.state.db.session() as session:
        await session.execute(
            update(CloudVideo)
            .where(CloudVideo.id == old)
            .values(created_at=utcnow() - timedelta(days=31))
        )
    async with app.state.db.session() as session:
        assert await cloud.delete_clips_past_retention(session, app.state.storage, 30) == 1
    async with app.state.db.session() as session:
        assert await cloud.delete_clips_past_retention(session, app.state.storage, 30) == 0
        remaining = set((await session.execute(select(CloudVideo.id))).scalars())
    assert old not in remaining and new in remaining
    assert await app.state.storage.head(f"videos/{vid}/{old}/old.mp4") is None
    assert await app.state.storage.head(f"videos/{vid}/{new}/new.mp4") is not None


async def test_the_cleanup_sweep_applies_cloud_video_retention_days(make_client: Any) -> None:
    first = await make_client()
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": "u4"}
    vid = (await first.post("/api/hello/register", json=body)).json()["virtualId"]
    clip = {"deviceId": vid, "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    upload = (await first.post("/api/cloud/videos", json=clip)).json()
    assert (await transfer(first, "PUT", upload["uploadUrl"], b"clip")).status_code == 200
    assert (await first.post(f"/api/cloud/videos/{upload['videoId']}/confirm")).status_code == 200
    async with first._transport.app.state.db.session() as session:  # type: ignore[attr-defined]
        await session.execute(update(CloudVideo).values(created_at=utcnow() - timedelta(days=8)))
    await first.stop_app()

    # The sweep runs at start, then hourly.
    second = await make_client(cloud_video_retention_days=7)
    app = second._transport.app  # type: ignore[attr-defined]
    for _ in range(500):
        async with app.state.db.session() as session:
            left = (await session.execute(select(CloudVideo.id))).scalars().all()
        if not left:
            break
        await asyncio.sleep(0.02)
    assert left == []
    assert await app.state.storage.head(f"videos/{vid}/{upload['videoId']}/a.mp4") is None


async def recorded(client: httpx.AsyncClient, vid: str, count: int) -> None:
    """`count` confirmed clips of the device, with thumbnails."""
    for index in range(count):
        clip = {
            "deviceId": vid,
            "filename": f"clip-{index}.mp4",
            "startTime": f"2024-05-01T1{index}:00:00Z",
            "thumbnail": True,
        }
        upload = (await client.post("/api/cloud/videos", json=clip)).json()
        assert (await transfer(client, "PUT", upload["uploadUrl"], b"clip")).status_code == 200
        assert (await transfer(client, "PUT", upload["thumbnailUploadUrl"], b"jpg")).is_success
        confirmed = await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")
        assert confirmed.status_code == 200, confirmed.text


async def played(client: httpx.AsyncClient, vid: str, auth: dict[str, str]) -> list[str]:
    listed = await client.post(
        "/api/cloud/videos/urls", json={"deviceId": vid, **DAY}, headers=auth
    )
    assert listed.status_code == 200, listed.text
    return [url for item in listed.json()["urls"] for url in (item["url"], item["thumbnail"])]


async def test_the_last_owner_removing_a_device_deletes_its_clips(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """As a factory reset: whoever binds the camera next (anyone who learned its real id
    can register it) must not read the previous owners' recordings. A household member
    leaving deletes nothing while another owner remains."""
    alice, alice_auth = await create_user()
    carol, carol_auth = await create_user()
    bob, bob_auth = await create_user()
    real_id = "REAL" + secrets.token_hex(8).upper()

    async def bind(user: dict[str, Any], auth: dict[str, str]) -> str:
        body = {"realDeviceId": real_id, "userId": user["id"]}
        vid = str((await client.post("/api/hello/register", json=body)).json()["virtualId"])
        shared = {"vid": vid, "password": "cam-secret"}
        bound = await client.post("/api/devices", json=shared, headers=auth)
        assert bound.status_code == 201, bound.text
        return vid

    vid = await bind(alice, alice_auth)
    assert await bind(carol, carol_auth) == vid
    await recorded(client, vid, 3)
    urls = await played(client, vid, alice_auth)
    assert len(urls) == 6

    assert (await client.delete(f"/api/devices/{vid}", headers=carol_auth)).status_code == 204
    assert len(await played(client, vid, alice_auth)) == 6
    for url in urls:
        assert (await transfer(client, "GET", url)).status_code == 200, url

    assert (await client.delete(f"/api/devices/{vid}", headers=alice_auth)).status_code == 204
    # The objects are gone too: a URL signed before answers 404.
    for url in urls:
        assert (await transfer(client, "GET", url)).status_code == 404, url
    assert await bind(bob, bob_auth) == vid
    assert await played(client, vid, bob_auth) == []
    app = client._transport.app  # type: ignore[attr-defined]
    async with app.state.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(CloudVideo)) == 0


async def test_a_device_nobody_owned_is_bound_without_its_clips(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """Clips a camera recorded while nobody owned it (its owners left, or their account was
    deleted) are not handed to whoever binds it next."""
    bob, bob_auth = await create_user()
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": bob["id"]}
    vid = str((await client.post("/api/hello/register", json=body)).json()["virtualId"])
    await recorded(client, vid, 2)
    bound = await client.post("/api/devices", json={"vid": vid}, headers=bob_auth)
    assert bound.status_code == 201, bound.text
    assert await played(client, vid, bob_auth) == []
    # What the camera records from now on is Bob's.
    await recorded(client, vid, 1)
    assert len(await played(client, vid, bob_auth)) == 2


async def test_a_storage_failure_does_not_keep_a_device_from_being_removed(
    client: httpx.AsyncClient, create_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    await recorded(client, vid, 1)
    storage = client._transport.app.state.storage  # type: ignore[attr-defined]

    async def unreachable(key: str) -> None:
        raise OSError("storage unreachable")

    storage.delete = unreachable
    with caplog.at_level(logging.WARNING):
        removed = await client.delete(f"/api/devices/{vid}", headers=auth)
    assert removed.status_code == 204
    assert (await client.get("/api/devices", headers=auth)).json() == []
    failed = [
        r.getMessage() for r in caplog.records if "clip_object_delete_failed" in r.getMessage()
    ]
    assert len(failed) == 2 and f"videos/{vid}/" in failed[0]
    async with client._transport.app.state.db.session() as session:  # type: ignore[attr-defined]
        assert await session.scalar(select(func.count()).select_from(CloudVideo)) == 0


async def test_playback_is_served_as_the_clips_type_whatever_the_uploader_said(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """A clip uploaded as text/html must not play back as a page (stored XSS wherever the
    storage is served under the app's domain): S3 keeps the uploader's Content-Type, so
    the signed URL overrides it."""
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    clip = {"deviceId": vid, "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    upload = (await client.post("/api/cloud/videos", json=clip, headers=auth)).json()
    html = {"Content-Type": "text/html"}
    put = await transfer(client, "PUT", upload["uploadUrl"], b"<script>alert(1)</script>", html)
    assert put.status_code == 200, put.text
    assert (await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")).is_success
    listed = await client.post(
        "/api/cloud/videos/urls", json={"deviceId": vid, **DAY}, headers=auth
    )
    [item] = listed.json()["urls"]
    played = await transfer(client, "GET", item["url"])
    assert played.status_code == 200
    assert played.headers["content-type"] == "video/mp4"


async def test_confirm_measures_the_upload_and_makes_it_final(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """The size is the stored object's; an empty one is refused; once confirmed, the
    embedded storage refuses uploads to the clip (an S3 presigned PUT cannot be revoked)."""
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    clip = {"deviceId": vid, "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    upload = (await client.post("/api/cloud/videos", json={**clip, "thumbnail": True})).json()
    confirm = f"/api/cloud/videos/{upload['videoId']}/confirm"

    assert (await transfer(client, "PUT", upload["uploadUrl"], b"")).status_code == 200
    empty = await client.post(confirm, json={"fileSize": 0})
    assert empty.status_code == 400, empty.text
    assert empty.json()["error"] == "Upload is empty"
    assert await played(client, vid, auth) == []

    # Uploading again is still possible until confirmed; the body's fileSize is ignored.
    assert (await transfer(client, "PUT", upload["uploadUrl"], b"12345")).status_code == 200
    assert (await transfer(client, "PUT", upload["thumbnailUploadUrl"], b"jpg")).is_success
    confirmed = await client.post(confirm, json={"fileSize": 10_000_000})
    assert confirmed.json() == {"success": True, "videoId": upload["videoId"], "fileSize": 5}

    storage = client._transport.app.state.storage  # type: ignore[attr-defined]
    for url in (upload["uploadUrl"], upload["thumbnailUploadUrl"]):
        again = await transfer(client, "PUT", url, b"x" * 100)
        if storage.backend == "local":
            assert again.status_code == 409, again.text
            assert again.json()["error"] == "Upload already confirmed"
    if storage.backend == "local":
        [url, thumbnail] = await played(client, vid, auth)
        assert (await transfer(client, "GET", url)).content == b"12345"
        assert (await transfer(client, "GET", thumbnail)).content == b"jpg"
    # Confirming again measures again: on S3 the size follows what its URL let in.
    expected = 5 if storage.backend == "local" else 100
    assert (await client.post(confirm)).json()["fileSize"] == expected
    assert (await client.delete(f"/api/devices/{vid}", headers=auth)).status_code == 204
    assert await storage.head(f"videos/{vid}/{upload['videoId']}/a.mp4") is None


async def test_a_file_system_refusing_the_seal_does_not_fail_the_confirm(
    client: httpx.AsyncClient,
    create_user: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Some mounts (another owner's files, network file systems) refuse chmod: the clip is
    confirmed all the same and stays open to uploads, as on S3."""
    storage = client._transport.app.state.storage  # type: ignore[attr-defined]
    if storage.backend != "local":
        pytest.skip("sealing is the embedded storage's")
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    clip = {"deviceId": vid, "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    upload = (await client.post("/api/cloud/videos", json=clip)).json()
    assert (await transfer(client, "PUT", upload["uploadUrl"], b"12345")).status_code == 200

    def refused(self: Path, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted", str(self))

    monkeypatch.setattr(Path, "chmod", refused)
    with caplog.at_level(logging.WARNING):
        confirmed = await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["fileSize"] == 5
    assert any("storage_seal_failed" in r.getMessage() for r in caplog.records)
    assert (await played(client, vid, auth))[0] is not None


async def test_a_thumbnail_sent_after_the_confirm_goes_with_the_device(
    client: httpx.AsyncClient, create_user: Any
) -> None:
    """The confirm found no thumbnail, so the row names none; the camera's late upload is
    stored all the same, and the last owner leaving deletes it too."""
    alice, auth = await create_user()
    vid = await owned_device(client, alice["id"], auth)
    clip = {"deviceId": vid, "filename": "a.mp4", "startTime": "2024-05-01T10:00:00Z"}
    upload = (await client.post("/api/cloud/videos", json={**clip, "thumbnail": True})).json()
    assert (await transfer(client, "PUT", upload["uploadUrl"], b"12345")).status_code == 200
    confirm = await client.post(f"/api/cloud/videos/{upload['videoId']}/confirm")
    assert confirm.status_code == 200
    assert (await transfer(client, "PUT", upload["thumbnailUploadUrl"], b"jpg")).is_success
    storage = client._transport.app.state.storage  # type: ignore[attr-defined]
    thumbnail = f"videos/{vid}/{upload['videoId']}-thumbnail.jpg"
    assert await storage.head(thumbnail) is not None

    assert (await client.delete(f"/api/devices/{vid}", headers=auth)).status_code == 204
    assert await storage.head(thumbnail) is None
