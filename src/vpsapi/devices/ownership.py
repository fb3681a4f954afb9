"""Which user owns which device (app side, no HTTP)."""

from __future__ import annotations

import structlog
from cryptography.exceptions import InvalidTag
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.auth.service import token_revoked
from vpsapi.core.context import client_ip_var
from vpsapi.core.db import is_deleted_meanwhile, utcnow
from vpsapi.core.errors import Conflict, NotFound
from vpsapi.core.logging import SECURITY_LOGGER
from vpsapi.core.security import constant_time_equals
from vpsapi.devices import cloud
from vpsapi.devices.models import Device, DeviceBinding, UserDevice
from vpsapi.devices.params import ParamKeys

OwnedDevice = tuple[UserDevice, Device]
security_log = structlog.get_logger(SECURITY_LOGGER)


async def bind(
    session: AsyncSession,
    keys: ParamKeys,
    user_id: str,
    vid: str,
    name: str | None,
    password: str | None,
) -> tuple[OwnedDevice, list[str]]:
    """Link a device to the user whose live `<user_id>_binding` names it. Returns also the
    object keys of clips to delete once committed: a device nobody owned (its last owner
    removed it, their account was deleted) comes without the clips it kept or recorded
    meanwhile."""
    binding = (
        await session.execute(
            select(DeviceBinding).where(
                DeviceBinding.binding_key == f"{user_id}_binding",
                DeviceBinding.virtual_id == vid,
                DeviceBinding.expires_at > utcnow(),
            )
        )
    ).scalar_one_or_none()
    if binding is None:
        # The app's "add" tapped twice: the first consumed the binding.
        already_owned = await session.scalar(
            select(UserDevice.device_id)
            .join(Device, Device.id == UserDevice.device_id)
            .where(UserDevice.user_id == user_id, Device.virtual_id == vid)
        )
        if already_owned is not None:
            raise Conflict(body={"error": "Device already bound"})
        raise NotFound(
            "No pending binding of this device for you", body={"error": "Binding not found"}
        )
    # Who else owns it is read only once the device is locked: two accounts binding it
    # at once would otherwise both find no owner, and both become one.
    device = await _lock_device(session, vid)
    shared = await _check_may_share(session, keys, device, user_id, vid, password)
    stale_objects = [] if shared else await cloud.forget_device_clips(session, device.id)
    owned = UserDevice(
        user_id=user_id,
        device_id=device.id,
        name=name or device.model or vid,
        password_sealed=keys.seal({"password": password}) if password else None,
    )
    try:
        async with session.begin_nested():
            session.add(owned)
    except IntegrityError as exc:
        if is_deleted_meanwhile(exc):  # the user, since their token was read
            raise token_revoked() from exc
        raise Conflict(body={"error": "Device already bound"}) from None
    await session.delete(binding)
    return (owned, device), stale_objects


async def _lock_device(session: AsyncSession, vid: str) -> Device:
    """The device, its row held until the transaction ends: whoever binds it meanwhile
    waits, then sees this binding. An UPDATE is a lock on both databases (SQLite has no
    row locks and ignores FOR UPDATE, but a write takes its one write lock); the
    timestamp it moves is the device row's own."""
    return (
        await session.scalars(
            update(Device)
            .where(Device.virtual_id == vid)
            .values(updated_at=utcnow())
            .returning(Device)
        )
    ).one()


async def _check_may_share(
    session: AsyncSession,
    keys: ParamKeys,
    device: Device,
    user_id: str,
    vid: str,
    password: str | None,
) -> bool:
    """A device another account owns is shared only with whoever gives the camera password
    an owner stored. A registration is no proof of holding the camera (anyone who learned
    its real id can send one), and an owner's cloud clips and alarms go to every owner.
    True when another account owns it (and the password was right)."""
    owners = (
        await session.scalars(
            select(UserDevice).where(
                UserDevice.device_id == device.id, UserDevice.user_id != user_id
            )
        )
    ).all()
    if owners and not any(_password_matches(keys, owner, password) for owner in owners):
        # A wrong camera password, as a wrong sign-in password, is told to fail2ban.
        security_log.warning(
            "device_share_refused", ip=client_ip_var.get() or None, user_id=user_id, vid=vid
        )
        raise Conflict(
            "The device belongs to another account: its owner removes it, or shares the "
            "camera password",
            body={"error": "Device bound to another account"},
        )
    return bool(owners)


def _password_matches(keys: ParamKeys, owner: UserDevice, password: str | None) -> bool:
    if not password or owner.password_sealed is None:
        return False
    try:
        stored = keys.open(owner.password_sealed).get("password")
    except (ValueError, KeyError, InvalidTag):  # sealed under a key no longer configured
        return False
    return isinstance(stored, str) and constant_time_equals(stored, password)


async def list_owned(session: AsyncSession, user_id: str) -> list[OwnedDevice]:
    rows = await session.execute(
        select(UserDevice, Device)
        .join(Device, Device.id == UserDevice.device_id)
        .where(UserDevice.user_id == user_id)
        .order_by(UserDevice.created_at)
    )
    return [(owned, device) for owned, device in rows.tuples()]


async def get_owned(session: AsyncSession, user_id: str, vid: str) -> OwnedDevice:
    row = (
        (
            await session.execute(
                select(UserDevice, Device)
                .join(Device, Device.id == UserDevice.device_id)
                .where(UserDevice.user_id == user_id, Device.virtual_id == vid)
            )
        )
        .tuples()
        .one_or_none()
    )
    if row is None:
        raise NotFound(body={"error": "Device not found"})
    return row[0], row[1]


async def rename(session: AsyncSession, user_id: str, vid: str, name: str) -> OwnedDevice:
    owned, device = await get_owned(session, user_id, vid)
    owned.name = name
    return owned, device


async def unbind(session: AsyncSession, user_id: str, vid: str) -> list[str]:
    """Remove the user's ownership. The last owner leaving deletes the device's clips, as a
    factory reset would: whoever binds it next must not read them (anyone who learned its
    real id can register it). Returns their object keys, to delete once committed."""
    owned, device = await get_owned(session, user_id, vid)
    # Two owners leaving at once: the second sees the first gone, and deletes the clips.
    await _lock_device(session, vid)
    await session.delete(owned)
    await session.flush()
    others = await session.scalar(
        select(UserDevice.id).where(UserDevice.device_id == device.id).limit(1)
    )
    return [] if others is not None else await cloud.forget_device_clips(session, device.id)
