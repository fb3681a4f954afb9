"""Seed-003 device protocol endpoints; bodies follow the seed exactly."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from vpsapi.core.db import SessionDep, utcnow
from vpsapi.core.errors import BadRequest, NotFound, Unauthorized
from vpsapi.core.openapi import read_by_hand
from vpsapi.core.schemas import parse_json_body
from vpsapi.devices import push, service
from vpsapi.devices.params import ParamKeys
from vpsapi.devices.schemas import AlarmType, Moment

router = APIRouter(prefix="/api", tags=["devices"])


REGISTER_PATH = "/api/hello/register"
MAX_BINDING_KEY = 300  # `<userId>_binding`; a user id is far shorter


# The bodies the routes below read by hand (documentation only): a missing or odd field
# gets the seed's own answer, not FastAPI's.
class BindingKeyIn(BaseModel):
    key: str = Field(description="`<userId>_binding`", max_length=MAX_BINDING_KEY)


# The seed's express-validator lengths, checked by `_validate_registration`.
REAL_ID_LENGTH = (16, 64)
USER_ID_LENGTH = (1, 255)
DETAIL_MAX_LENGTH = 64  # model, firmwareVersion, supplier, cluster


class RegistrationIn(BaseModel):
    realDeviceId: str = Field(min_length=REAL_ID_LENGTH[0], max_length=REAL_ID_LENGTH[1])
    userId: str = Field(min_length=USER_ID_LENGTH[0], max_length=USER_ID_LENGTH[1])
    model: str | None = Field(default=None, max_length=DETAIL_MAX_LENGTH)
    firmwareVersion: str | None = Field(default=None, max_length=DETAIL_MAX_LENGTH)
    supplier: str | None = Field(default=None, max_length=DETAIL_MAX_LENGTH)
    cluster: str | None = Field(default=None, max_length=DETAIL_MAX_LENGTH)


class RegistrationProblem(BaseModel):
    type: str = "field"
    value: Any = None
    msg: str
    path: str
    location: str = "body"


class RegistrationRefused(BaseModel):
    error: str | None = Field(default=None, description="`Missing required parameters`")
    errors: list[RegistrationProblem]


class ServiceParamIn(BaseModel):
    deviceId: str | list[str] = Field(description="a device id, or a one-element list of one")


class ConfirmOut(BaseModel):
    success: bool = True
    message: str = "Previous binding cleared"


class ValueOut(BaseModel):
    value: str


class RegisterOut(BaseModel):
    success: bool = True
    virtualId: str
    message: str = "Device registered successfully"


class ServiceParamOut(BaseModel):
    serviceParam: str


class VuidOut(BaseModel):
    uid: str
    supplier: str | None = None
    cluster: str | None = None
    online: bool | None = None


class HeartbeatOut(BaseModel):
    success: bool = True
    online: bool = True
    lastSeen: str


def require_device_token(request: Request) -> None:
    expected = request.app.state.settings.device_api_token
    if expected is None:
        return
    given = request.headers.get("x-device-token", "")
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise Unauthorized(body={"error": "Invalid device token"})


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = parse_json_body(await request.body())
    except BadRequest:
        body = None  # each endpoint answers a body it cannot read as one missing its fields
    return body if isinstance(body, dict) else {}


async def _binding_key(request: Request) -> str:
    key = (await _json_body(request)).get("key")
    if not isinstance(key, str) or not key:
        raise BadRequest(body={"error": "Missing key parameter"})
    if len(key) > MAX_BINDING_KEY:
        raise BadRequest(
            body={"error": f"Invalid key parameter: at most {MAX_BINDING_KEY} characters"}
        )
    return key


def _length_error(body: dict[str, Any], path: str, lo: int, hi: int, optional: bool) -> bool:
    value = body.get(path)
    if value is None and optional:
        return False
    return not isinstance(value, str) or not lo <= len(value) <= hi


def _js_falsy(value: Any) -> bool:
    """`!value` in JavaScript for a JSON value: missing, null, false, 0 or "" (not [] or {})."""
    return not value and not isinstance(value, (list, dict))


def _validate_registration(body: dict[str, Any]) -> None:
    """express-validator rules of the seed, answered in its `{errors: [...]}` shape."""
    rules = [
        ("realDeviceId", *REAL_ID_LENGTH, False),
        ("userId", *USER_ID_LENGTH, False),
        ("model", 0, DETAIL_MAX_LENGTH, True),
    ]
    errors = []
    for path, lo, hi, optional in rules:
        if _length_error(body, path, lo, hi, optional):
            error: dict[str, Any] = {"type": "field", "msg": "Invalid value", "path": path}
            if path in body:
                error["value"] = body[path]
            error["location"] = "body"
            errors.append(error)
    for path in ("firmwareVersion", "supplier", "cluster"):
        value = body.get(path)
        if value is not None and (not isinstance(value, str) or len(value) > DETAIL_MAX_LENGTH):
            errors.append(
                {
                    "type": "field",
                    "value": value,
                    "msg": "Invalid value",
                    "path": path,
                    "location": "body",
                }
            )
    if errors:
        body_out: dict[str, Any] = {"errors": errors}
        if _js_falsy(body.get("realDeviceId")) or _js_falsy(body.get("userId")):
            # The seed's own `if (!realDeviceId || !userId)` answer, for clients reading `error`.
            body_out = {"error": "Missing required parameters", **body_out}
        raise BadRequest(body=body_out)


_MISSING_KEY: dict[int | str, dict[str, Any]] = {400: {"description": "Missing key parameter"}}


@router.post(
    "/hello/confirm",
    response_model=ConfirmOut,
    responses=_MISSING_KEY,
    openapi_extra=read_by_hand(BindingKeyIn),
)
async def confirm(request: Request, session: SessionDep) -> ConfirmOut:
    await service.clear_binding(session, await _binding_key(request))
    return ConfirmOut()


@router.post(
    "/hello/query",
    response_model=ValueOut,
    responses={**_MISSING_KEY, 404: {"description": "Binding not found"}},
    openapi_extra=read_by_hand(BindingKeyIn),
)
async def query(request: Request, session: SessionDep) -> ValueOut:
    value = await service.query_binding(session, await _binding_key(request))
    if value is None:
        raise NotFound(body={"error": "Binding not found"})
    return ValueOut(value=value)


@router.post(
    REGISTER_PATH.removeprefix(router.prefix),
    response_model=RegisterOut,
    responses={
        400: {
            "model": RegistrationRefused,
            "description": "express-validator's errors (a NUL in the body too)",
        },
        401: {"description": "Invalid device token (when DEVICE_API_TOKEN is set)"},
    },
    openapi_extra=read_by_hand(RegistrationIn),
)
async def register(request: Request, session: SessionDep) -> RegisterOut:
    require_device_token(request)
    body = await _json_body(request)
    _validate_registration(body)
    vid = await service.register(
        session,
        service.Registration(
            real_device_id=body["realDeviceId"],
            user_id=body["userId"],
            model=body.get("model"),
            firmware_version=body.get("firmwareVersion"),
            supplier=body.get("supplier"),
            cluster=body.get("cluster"),
        ),
    )
    return RegisterOut(virtualId=vid)


@router.get("/vuid/{vid}", response_model=VuidOut, response_model_exclude_unset=True)
async def resolve(vid: str, request: Request, session: SessionDep) -> VuidOut | JSONResponse:
    device = await service.resolve_vid(session, vid)
    if device is None:
        # Not a known VID: the seed assumes it is already a real device id.
        return JSONResponse({"uid": vid})
    return VuidOut(
        uid=device.real_device_id,
        supplier=device.supplier,
        cluster=device.cluster,
        online=service.is_online(device, request.app.state.settings.device_offline_after),
    )


@router.post(
    "/devices/{vid}/heartbeat",
    response_model=HeartbeatOut,
    responses={401: {"description": "Invalid device token"}, 404: {"description": "Unknown"}},
)
async def heartbeat(vid: str, request: Request, session: SessionDep) -> HeartbeatOut:
    require_device_token(request)
    device = await service.heartbeat(session, vid)
    if device is None or device.last_seen is None:
        raise NotFound(body={"error": "Device not found"})
    return HeartbeatOut(lastSeen=device.last_seen.isoformat().replace("+00:00", "Z"))


class AlarmIn(BaseModel):
    alarmType: AlarmType = Field(description="motion, human, pir, sound, face, cry, doorbell, ...")
    time: Moment | None = Field(default=None, description="when it happened (default: now)")
    videoId: str | None = Field(default=None, max_length=32, description="the clip, if any")


class AlarmOut(BaseModel):
    success: bool = True
    notifications: int = Field(description="delivery jobs queued (one per owner's token)")


@router.post(
    "/devices/{vid}/events",
    response_model=AlarmOut,
    status_code=202,
    summary="Camera: an alarm; every owner's phones get a push notification",
    responses={401: {"description": "Invalid device token"}, 404: {"description": "Unknown"}},
)
async def alarm_event(
    vid: str, body: AlarmIn, request: Request, session: SessionDep, background: BackgroundTasks
) -> AlarmOut:
    require_device_token(request)
    device = await service.heartbeat(session, vid)  # an alarm also proves it is online
    if device is None:
        raise NotFound(body={"error": "Device not found"})
    alarm = push.Alarm(body.alarmType, body.time or utcnow(), body.videoId)
    job_ids = await push.notify_owners(session, request.app.state.settings, device, alarm)
    engine = request.app.state.jobs_engine
    for job_id in job_ids:
        # After the response, i.e. after the commit: workers find the rows.
        background.add_task(engine.dispatch_new, job_id)
    return AlarmOut(notifications=len(job_ids))


def param_keys(request: Request) -> ParamKeys:
    keys = getattr(request.app.state, "device_param_keys", None)
    if keys is None:
        keys = request.app.state.device_param_keys = ParamKeys.from_settings(
            request.app.state.settings
        )
    return keys


@router.post(
    "/auth/service-param",
    response_model=ServiceParamOut,
    responses={400: {"description": "Missing deviceId"}, 404: {"description": "Device not found"}},
    openapi_extra=read_by_hand(ServiceParamIn),
)
async def service_param(request: Request, session: SessionDep) -> ServiceParamOut:
    device_id = (await _json_body(request)).get("deviceId")
    # The app sends a string; the Veepai API shape is a one-element list.
    if isinstance(device_id, list) and len(device_id) == 1:
        device_id = device_id[0]
    if not isinstance(device_id, str) or not device_id:
        raise BadRequest(body={"error": "Missing deviceId"})
    param = await service.service_param(session, param_keys(request), device_id)
    if param is None:
        raise NotFound(body={"error": "Device not found"})
    return ServiceParamOut(serviceParam=param)
