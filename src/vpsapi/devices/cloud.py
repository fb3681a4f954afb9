"""Cloud videos: cameras upload clips to object storage, owners get signed playback URLs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import ColumnElement, and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.core.db import new_id, utcnow
from vpsapi.core.errors import BadRequest, Conflict, Forbidden, NotFound
from vpsapi.core.storage import ObjectStorage
from vpsapi.devices.models import CloudVideo, UserDevice
from vpsapi.devices.service import find_device

log = structlog.get_logger(__name__)

# An upload that started just before its URL expired may still be running.
UPLOAD_GRACE = timedelta(hours=1)
MAX_LISTED = 1000
CLEANUP_BATCH = 500


@dataclass(frozen=True)
class Clip:
    device_id: str
    filename: str
    start_time: datetime
    duration: int | None
    alarm_type: str | None
    thumbnail: bool


@dataclass(frozen=True)
class PendingUpload:
    video: CloudVideo
    upload_url: str
    thumbnail_upload_url: str | None


@dataclass(frozen=True)
class Playback:
    video: CloudVideo
    url: str
    thumbnail_url: str | None


def _thumbnail_key(folder: str) -> str:
    return f"{folder}-thumbnail.jpg"


def _object_keys(storage_path: str) -> list[str]:
    """A clip's objects: its file and its thumbnail's key, whether or not its row names a
    thumbnail (one uploaded after the confirm, which found none, is stored all the same)."""
    return [storage_path, _thumbnail_key(storage_path.rsplit("/", 1)[0])]


async def register_clip(
    session: AsyncSession, storage: ObjectStorage, clip: Clip, url_ttl: int
) -> PendingUpload:
    """Record a clip and hand the camera presigned upload URLs for it."""
    device = await find_device(session, clip.device_id)
    if device is None:
        raise NotFound(body={"error": "Device not found"})
    video_id = new_id()
    folder = f"videos/{device.virtual_id}/{video_id}"  # the camera's filename goes inside
    video = CloudVideo(
        id=video_id,
        device_id=device.id,
        filename=clip.filename,
        start_time=clip.start_time,
        duration=clip.duration,
        end_time=clip.start_time + timedelta(seconds=clip.duration) if clip.duration else None,
        alarm_type=clip.alarm_type,
        storage_path=f"{folder}/{clip.filename}",
        thumbnail_path=_thumbnail_key(folder) if clip.thumbnail else None,
        is_uploaded=False,
        upload_expires_at=utcnow() + timedelta(seconds=url_ttl),
    )
    session.add(video)
    return PendingUpload(
        video=video,
        upload_url=storage.presign_put(video.storage_path, url_ttl),
        thumbnail_upload_url=(
            storage.presign_put(video.thumbnail_path, url_ttl) if video.thumbnail_path else None
        ),
    )


async def confirm_upload(
    session: AsyncSession, storage: ObjectStorage, video_id: str
) -> CloudVideo:
    """Mark a clip uploaded once its object really is in storage."""
    video = await session.get(CloudVideo, video_id)
    if video is None:
        raise NotFound(body={"error": "Video not found"})
    stored = await storage.head(video.storage_path)
    if stored is None:
        raise Conflict("The upload has not arrived", body={"error": "Upload not found"})
    if stored.size == 0:
        # Not final: the camera may upload again through its URL, then confirm.
        raise BadRequest("The uploaded clip is empty", body={"error": "Upload is empty"})
    video.file_size = stored.size  # measured in storage, whatever the camera claims
    video.is_uploaded = True
    await storage.seal(video.storage_path)
    if video.thumbnail_path is not None:
        if await storage.head(video.thumbnail_path) is None:
            video.thumbnail_path = None  # the camera did not send one after all
        else:
            await storage.seal(video.thumbnail_path)
    return video


async def playback_urls(
    session: AsyncSession,
    storage: ObjectStorage,
    user_id: str,
    device_id: str,
    start: datetime,
    end: datetime,
    url_ttl: int,
) -> list[Playback]:
    """Signed URLs for the uploaded clips of a device the user owns, oldest first."""
    device = await find_device(session, device_id)
    owned = (
        device is not None
        and (
            await session.execute(
                select(UserDevice.id).where(
                    UserDevice.user_id == user_id, UserDevice.device_id == device.id
                )
            )
        ).first()
    )
    if device is None or not owned:
        raise Forbidden(body={"error": "Access denied"})
    videos = (
        await session.execute(
            select(CloudVideo)
            .where(
                CloudVideo.device_id == device.id,
                CloudVideo.start_time >= start,
                CloudVideo.start_time <= end,
                CloudVideo.is_uploaded.is_(True),
            )
            .order_by(CloudVideo.start_time, CloudVideo.id)
            .limit(MAX_LISTED)
        )
    ).scalars()
    return [
        Playback(
            video=video,
            url=storage.presign_get(video.storage_path, url_ttl),
            thumbnail_url=(
                storage.presign_get(video.thumbnail_path, url_ttl) if video.thumbnail_path else None
            ),
        )
        for video in videos
    ]


async def delete_expired_uploads(session: AsyncSession, storage: ObjectStorage) -> int:
    """Forget clips whose upload URL expired unconfirmed, and any partial objects."""
    return await _delete_clips(
        session,
        storage,
        and_(
            CloudVideo.is_uploaded.is_(False),
            CloudVideo.upload_expires_at < utcnow() - UPLOAD_GRACE,
        ),
    )


async def delete_clips_past_retention(
    session: AsyncSession, storage: ObjectStorage, days: int
) -> int:
    """Delete up to a batch of clips stored more than `days` days ago, objects and rows.
    The server's clock decides (`created_at`), not the camera's `startTime`: a camera
    with a wrong clock must not have its clips deleted at once."""
    return await _delete_clips(
        session, storage, CloudVideo.created_at < utcnow() - timedelta(days=days)
    )


async def forget_device_clips(session: AsyncSession, device_id: str) -> list[str]:
    """Delete every clip row of a device, as a factory reset would. Returns their object
    keys, for `delete_objects` once this is committed: a rolled-back unbind keeps its clips
    whole, and no URL is signed for an object without its row."""
    rows = await session.execute(
        delete(CloudVideo)
        .where(CloudVideo.device_id == device_id)
        .returning(CloudVideo.storage_path)
    )
    return [key for (storage_path,) in rows.tuples() for key in _object_keys(storage_path)]


async def delete_objects(storage: ObjectStorage, keys: list[str]) -> None:
    """Best effort: a failure is logged (with the key, for an operator) and skipped, as an
    orphan object is harmless: nothing signs a URL for it any more."""
    for key in keys:
        try:
            await storage.delete(key)
        except Exception as exc:
            log.warning("devices.clip_object_delete_failed", key=key, error=str(exc))


async def _delete_clips(
    session: AsyncSession, storage: ObjectStorage, condition: ColumnElement[bool]
) -> int:
    clips = list(
        (await session.execute(select(CloudVideo).where(condition).limit(CLEANUP_BATCH))).scalars()
    )
    await delete_objects(
        storage, [key for video in clips for key in _object_keys(video.storage_path)]
    )
    if clips:
        await session.execute(
            delete(CloudVideo).where(CloudVideo.id.in_([video.id for video in clips]))
        )
    return len(clips)
