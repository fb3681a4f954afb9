"""Seed-003 device protocol: registration, binding lookup, VID resolution (no HTTP)."""

from __future__ import annotations

import json
import secrets
import string
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.core.db import utcnow
from vpsapi.devices.models import Device, DeviceBinding
from vpsapi.devices.params import ParamKeys, service_param_payload

VID_ALPHABET = string.ascii_uppercase + string.digits
VID_ATTEMPTS = 5
BINDING_TTL = timedelta(minutes=10)
MAX_LOOKUP_ID = 255  # longer device ids are not looked up (stored ones are 64 at most)


def new_virtual_id() -> str:
    """`VE` + 13 uppercase alphanumerics from a CSPRNG (36^13 ≈ 1.7e20 ids)."""
    return "VE" + "".join(secrets.choice(VID_ALPHABET) for _ in range(13))


@dataclass(frozen=True)
class Registration:
    real_device_id: str
    user_id: str
    model: str | None = None
    firmware_version: str | None = None
    supplier: str | None = None
    cluster: str | None = None


async def clear_binding(session: AsyncSession, key: str) -> None:
    await session.execute(delete(DeviceBinding).where(DeviceBinding.binding_key == key))


async def query_binding(session: AsyncSession, key: str) -> str | None:
    """The seed's `value`: URL-encoded JSON for `*_binding` keys, else the bare VID."""
    binding = (
        await session.execute(
            select(DeviceBinding).where(
                DeviceBinding.binding_key == key, DeviceBinding.expires_at > utcnow()
            )
        )
    ).scalar_one_or_none()
    if binding is None:
        return None
    if not key.endswith("_binding"):
        return binding.virtual_id
    status = binding.status
    data: dict[str, Any] = {
        "vuid": binding.virtual_id,
        "timestamp": int(time.time()),
        "userid": binding.user_id,
        "C2Net": {
            "TStep": 1,
            "CStep": 1,
            "FCode": 4097,
            "Status": 1 if status in ("c2net", "completed") else 0,
            "Ecode": 0,
        },
    }
    if status in ("r2svr", "completed"):
        data["R2SVR"] = {"TStep": 2, "CStep": 1, "Status": 1, "Ecode": 0}
    if status == "completed":
        data["B2SVR"] = {"TStep": 3, "CStep": 1, "Status": 1, "Ecode": 0}
    # As encodeURIComponent(JSON.stringify(...)): non-ASCII stays UTF-8 (ü → %C3%BC, not
    # \u00fc), and A-Z a-z 0-9 - _ . ! ~ * ' ( ) stay unescaped.
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return quote(text, safe="-_.!~*'()")


async def _device_by_real_id(session: AsyncSession, real_device_id: str) -> Device | None:
    return (
        await session.execute(select(Device).where(Device.real_device_id == real_device_id))
    ).scalar_one_or_none()


async def _get_or_create_device(session: AsyncSession, reg: Registration) -> Device:
    """Same realDeviceId → same VID even when registrations race (unique indexes decide)."""
    for _ in range(VID_ATTEMPTS):
        device = await _device_by_real_id(session, reg.real_device_id)
        if device is not None:
            return device
        device = Device(
            virtual_id=new_virtual_id(),
            real_device_id=reg.real_device_id,
            user_id=reg.user_id,
            model=reg.model,
            firmware_version=reg.firmware_version,
            supplier=reg.supplier,
            cluster=reg.cluster,
            is_online=True,
            last_seen=utcnow(),
        )
        try:
            async with session.begin_nested():
                session.add(device)
            return device
        except IntegrityError:
            # Another request registered this device, or (astronomically rarely) the VID
            # collided: look again, then retry with a fresh VID.
            continue
    raise RuntimeError("could not allocate a virtual id")


async def register(session: AsyncSession, reg: Registration) -> str:
    device = await _get_or_create_device(session, reg)
    device.is_online = True
    device.last_seen = utcnow()
    key = f"{reg.user_id}_binding"
    data = json.dumps(
        {
            "vuid": device.virtual_id,
            "realDeviceId": reg.real_device_id,
            "model": reg.model,
            "firmwareVersion": reg.firmware_version,
            "supplier": reg.supplier,
            "cluster": reg.cluster,
            "timestamp": int(time.time() * 1000),
        }
    )
    for _ in range(VID_ATTEMPTS):
        binding = (
            await session.execute(select(DeviceBinding).where(DeviceBinding.binding_key == key))
        ).scalar_one_or_none()
        try:
            async with session.begin_nested():
                if binding is None:
                    binding = DeviceBinding(binding_key=key, user_id=reg.user_id)
                    session.add(binding)
                binding.virtual_id = device.virtual_id
                binding.real_device_id = reg.real_device_id
                binding.model = reg.model
                binding.status = "completed"
                binding.binding_data = data
                binding.expires_at = utcnow() + BINDING_TTL
            break
        except IntegrityError:
            continue
    return device.virtual_id


def is_online(device: Device, offline_after_s: int) -> bool:
    seen = device.last_seen
    return bool(device.is_online and seen and seen > utcnow() - timedelta(seconds=offline_after_s))


async def heartbeat(session: AsyncSession, device_id: str) -> Device | None:
    """The camera (by its virtual id or the real id its firmware knows) is online now."""
    device = await find_device(session, device_id) if len(device_id) <= MAX_LOOKUP_ID else None
    if device is not None:
        device.is_online = True
        device.last_seen = utcnow()
    return device


async def resolve_vid(session: AsyncSession, vid: str) -> Device | None:
    device = (
        await session.execute(select(Device).where(Device.virtual_id == vid))
    ).scalar_one_or_none()
    return device


async def delete_expired_bindings(session: AsyncSession) -> int:
    result = await session.execute(
        delete(DeviceBinding).where(DeviceBinding.expires_at <= utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def find_device(session: AsyncSession, device_id: str) -> Device | None:
    """A device by its virtual id or its real id (the app and cameras use either)."""
    return (
        await session.execute(
            select(Device)
            .where(or_(Device.virtual_id == device_id, Device.real_device_id == device_id))
            .limit(1)
        )
    ).scalar_one_or_none()


async def service_param(session: AsyncSession, keys: ParamKeys, device_id: str) -> str | None:
    """The device's sealed service parameter, cached until the current key changes."""
    if len(device_id) > MAX_LOOKUP_ID:
        return None  # ids are at most 64 characters: no device has it, spare the query
    device = await find_device(session, device_id)
    if device is None:
        return None
    stored = device.service_param
    if stored is not None and keys.key_id(stored) == keys.current:
        return stored
    sealed = keys.seal(
        service_param_payload(device.real_device_id, device.supplier, device.cluster)
    )
    # Written only over what was read: of apps asking at once for a new device, one seals
    # it and every one of them gets that one (each sealing gives a different text).
    unchanged = Device.service_param.is_(None) if stored is None else Device.service_param == stored
    written = await session.scalar(
        update(Device)
        .where(Device.id == device.id, unchanged)
        .values(service_param=sealed)
        .returning(Device.service_param)
        .execution_options(synchronize_session=False)
    )
    if written is None:
        written = await session.scalar(select(Device.service_param).where(Device.id == device.id))
    return written
