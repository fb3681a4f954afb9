"""Cloud videos: camera uploads (device token rules as heartbeat) and the app's
seed-003 `POST /api/cloud/videos/urls` (JWT, owners only)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from vpsapi.auth.dependencies import CurrentUser
from vpsapi.core.db import SessionDep
from vpsapi.core.schemas import OUT_OF_RANGE, JsonBool, NumberNotBool
from vpsapi.core.storage import ObjectStorage, absolute_url
from vpsapi.core.timestamps import js_iso
from vpsapi.devices import cloud
from vpsapi.devices.router import require_device_token
from vpsapi.devices.schemas import AlarmType, DeviceId, Moment

router = APIRouter(prefix="/api/cloud/videos", tags=["devices"])


class ClipIn(BaseModel):
    deviceId: DeviceId
    filename: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
    startTime: Moment
    duration: NumberNotBool[Annotated[int, Field(ge=0, le=86_400)]] | None = Field(
        default=None, description="seconds"
    )
    alarmType: AlarmType | None = None
    thumbnail: JsonBool = Field(default=False, description="also return a thumbnail upload URL")

    @field_validator("duration")
    @classmethod
    def _ends_in_range(cls, duration: int | None, info: ValidationInfo) -> int | None:
        start = info.data.get("startTime")  # absent when startTime itself was refused
        if start is not None and duration:
            try:
                start + timedelta(seconds=duration)  # the clip's end_time
            except OverflowError:
                raise ValueError(f"startTime + duration {OUT_OF_RANGE}") from None
        return duration


class UploadOut(BaseModel):
    videoId: str
    uploadUrl: str
    thumbnailUploadUrl: str | None = None
    expiresIn: int


class ConfirmedOut(BaseModel):
    success: bool = True
    videoId: str
    fileSize: int


class UrlsIn(BaseModel):
    deviceId: DeviceId
    startTime: Moment
    endTime: Moment

    @model_validator(mode="after")
    def _ordered(self) -> UrlsIn:
        if self.endTime < self.startTime:
            raise ValueError("endTime must not be before startTime")
        return self


class VideoUrl(BaseModel):
    filename: str
    url: str
    startTime: str
    duration: int | None
    thumbnail: str | None
    alarmType: str | None


class UrlsOut(BaseModel):
    urls: list[VideoUrl]


def _storage(request: Request) -> ObjectStorage:
    storage: ObjectStorage = request.app.state.storage
    return storage


def _public(request: Request, url: str) -> str:
    return absolute_url(url, str(request.base_url))


_CAMERA_ERRORS: dict[int | str, dict[str, str]] = {
    401: {"description": '`{"error": "Invalid device token"}` (when DEVICE_API_TOKEN is set)'},
    404: {"description": '`{"error": "Device not found" | "Video not found"}`'},
}


@router.post(
    "",
    response_model=UploadOut,
    response_model_exclude_none=True,
    status_code=201,
    summary="Camera: register a clip and get a presigned upload URL",
    responses=_CAMERA_ERRORS,
)
async def register_clip(body: ClipIn, request: Request, session: SessionDep) -> UploadOut:
    require_device_token(request)
    ttl = request.app.state.settings.cloud_upload_url_ttl
    pending = await cloud.register_clip(
        session,
        _storage(request),
        cloud.Clip(
            device_id=body.deviceId,
            filename=body.filename,
            start_time=body.startTime,
            duration=body.duration,
            alarm_type=body.alarmType,
            thumbnail=body.thumbnail,
        ),
        ttl,
    )
    return UploadOut(
        videoId=pending.video.id,
        uploadUrl=_public(request, pending.upload_url),
        thumbnailUploadUrl=(
            _public(request, pending.thumbnail_upload_url) if pending.thumbnail_upload_url else None
        ),
        expiresIn=ttl,
    )


@router.post(
    "/{video_id}/confirm",
    response_model=ConfirmedOut,
    summary="Camera: the upload finished (checked against storage)",
    responses={
        **_CAMERA_ERRORS,
        400: {"description": '`{"error": "Upload is empty"}`'},
        409: {"description": '`{"error": "Upload not found"}`'},
    },
)
async def confirm_upload(video_id: str, request: Request, session: SessionDep) -> ConfirmedOut:
    require_device_token(request)
    video = await cloud.confirm_upload(session, _storage(request), video_id)
    return ConfirmedOut(videoId=video.id, fileSize=video.file_size or 0)


@router.post(
    "/urls",
    response_model=UrlsOut,
    summary="App: signed playback URLs of a device's clips in a time range (seed 003)",
    responses={403: {"description": '`{"error": "Access denied"}`: not your device'}},
)
async def video_urls(
    body: UrlsIn, request: Request, user: CurrentUser, session: SessionDep
) -> UrlsOut:
    assert user.user_id is not None
    playbacks = await cloud.playback_urls(
        session,
        _storage(request),
        user.user_id,
        body.deviceId,
        body.startTime,
        body.endTime,
        request.app.state.settings.cloud_video_url_ttl,
    )
    return UrlsOut(
        urls=[
            VideoUrl(
                filename=item.video.filename,
                url=_public(request, item.url),
                startTime=js_iso(item.video.start_time),
                duration=item.video.duration,
                thumbnail=_public(request, item.thumbnail_url) if item.thumbnail_url else None,
                alarmType=item.video.alarm_type,
            )
            for item in playbacks
        ]
    )
