"""App-side API: the logged-in user's own devices (user from the JWT, never the body)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Request, Response
from pydantic import AliasChoices, BaseModel, Field

from vpsapi.auth.dependencies import CurrentUser
from vpsapi.core.db import SessionDep
from vpsapi.core.errors import NotFound
from vpsapi.devices import cloud, ownership, push, service
from vpsapi.devices.router import param_keys

router = APIRouter(prefix="/api/devices", tags=["devices"])


# Seed 003's `user_devices.device_name VARCHAR(255)`.
DeviceName = Annotated[str, Field(min_length=1, max_length=255)]


class BindIn(BaseModel):
    vid: str = Field(min_length=1, max_length=64)
    name: DeviceName | None = None
    password: str | None = Field(default=None, max_length=128)


class RenameIn(BaseModel):
    name: DeviceName


class MyDeviceOut(BaseModel):
    vid: str
    name: str
    model: str | None
    online: bool
    lastSeen: datetime | None
    hasPassword: bool


def _out(request: Request, owned: ownership.OwnedDevice) -> MyDeviceOut:
    link, device = owned
    offline_after = request.app.state.settings.device_offline_after
    return MyDeviceOut(
        vid=device.virtual_id,
        name=link.name,
        model=device.model,
        online=service.is_online(device, offline_after),
        lastSeen=device.last_seen,
        hasPassword=link.password_sealed is not None,
    )


@router.post(
    "",
    response_model=MyDeviceOut,
    status_code=201,
    responses={
        404: {"description": '`{"error": "Binding not found"}`'},
        409: {"description": '`{"error": "Device already bound"}`'},
    },
)
async def bind_device(
    body: BindIn,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    background: BackgroundTasks,
) -> MyDeviceOut:
    assert user.user_id is not None
    owned, stale_objects = await ownership.bind(
        session, param_keys(request), user.user_id, body.vid, body.name, body.password
    )
    _delete_after_commit(request, background, stale_objects)
    return _out(request, owned)


def _delete_after_commit(request: Request, background: BackgroundTasks, keys: list[str]) -> None:
    if keys:
        # After the response, i.e. after the commit that deleted their rows.
        background.add_task(cloud.delete_objects, request.app.state.storage, keys)


@router.get("", response_model=list[MyDeviceOut])
async def list_devices(
    request: Request, user: CurrentUser, session: SessionDep
) -> list[MyDeviceOut]:
    assert user.user_id is not None
    return [_out(request, row) for row in await ownership.list_owned(session, user.user_id)]


@router.patch("/{vid}", response_model=MyDeviceOut)
async def rename_device(
    vid: str, body: RenameIn, request: Request, user: CurrentUser, session: SessionDep
) -> MyDeviceOut:
    assert user.user_id is not None
    return _out(request, await ownership.rename(session, user.user_id, vid, body.name))


@router.delete("/{vid}", status_code=204, response_class=Response)
async def unbind_device(
    vid: str, request: Request, user: CurrentUser, session: SessionDep, background: BackgroundTasks
) -> Response:
    assert user.user_id is not None
    _delete_after_commit(request, background, await ownership.unbind(session, user.user_id, vid))
    return Response(status_code=204)


push_router = APIRouter(prefix="/api/push", tags=["devices"])


class PushTokenIn(BaseModel):
    """Seed 003's `{deviceType: ios|android, token}` (`device_type` too, its column's name),
    or `{platform: fcm|apns|webhook}`."""

    token: str = Field(min_length=1, max_length=4096)
    platform: Literal["fcm", "apns", "webhook"] | None = None
    deviceType: Literal["ios", "android"] | None = Field(
        default=None, validation_alias=AliasChoices("deviceType", "device_type")
    )

    @property
    def provider_platform(self) -> str:
        if self.platform is not None:
            return self.platform
        return "apns" if self.deviceType == "ios" else "fcm"


class PushTokenDeleteIn(BaseModel):
    token: str = Field(min_length=1, max_length=4096)


@push_router.post("/tokens", status_code=204, response_class=Response)
async def save_push_token(body: PushTokenIn, user: CurrentUser, session: SessionDep) -> Response:
    assert user.user_id is not None
    await push.save_token(session, user.user_id, body.provider_platform, body.token)
    return Response(status_code=204)


@push_router.delete(
    "/tokens",
    status_code=204,
    response_class=Response,
    responses={404: {"description": '`{"error": "Push token not found"}`'}},
)
async def delete_push_token(
    body: PushTokenDeleteIn, user: CurrentUser, session: SessionDep
) -> Response:
    assert user.user_id is not None
    if not await push.delete_token(session, user.user_id, body.token):
        raise NotFound(body={"error": "Push token not found"})
    return Response(status_code=204)
