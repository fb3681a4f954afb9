"""Camera devices and the short-lived bindings of the seed-003 setup flow."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from vpsapi.core.db import Base, IdMixin, TimestampMixin, UTCDateTime


class Device(IdMixin, TimestampMixin, Base):
    __tablename__ = "devices"

    virtual_id: Mapped[str] = mapped_column(String(64), nullable=False)
    real_device_id: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[str] = mapped_column(String(255), nullable=False)
    model: Mapped[str | None] = mapped_column(String(64))
    firmware_version: Mapped[str | None] = mapped_column(String(64))
    supplier: Mapped[str | None] = mapped_column(String(64))
    cluster: Mapped[str | None] = mapped_column(String(64))
    is_online: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime())
    service_param: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_devices_virtual_id", "virtual_id", unique=True),
        Index("ix_devices_real_device_id", "real_device_id", unique=True),
    )


class DeviceBinding(IdMixin, TimestampMixin, Base):
    __tablename__ = "device_bindings"

    binding_key: Mapped[str] = mapped_column(String(300), nullable=False)
    virtual_id: Mapped[str] = mapped_column(String(64), nullable=False)
    real_device_id: Mapped[str] = mapped_column(String(64), nullable=False)
    user_id: Mapped[str] = mapped_column(String(255), nullable=False)
    model: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    binding_data: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (Index("ix_device_bindings_binding_key", "binding_key", unique=True),)


class UserDevice(IdMixin, TimestampMixin, Base):
    """A user's ownership of a device, made by completing the `<userId>_binding` flow."""

    __tablename__ = "user_devices"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    device_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    # Camera password sealed with the device parameter keys; never sent back.
    password_sealed: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_user_devices_user_device", "user_id", "device_id", unique=True),
        Index("ix_user_devices_device_id", "device_id"),
    )


class PushToken(IdMixin, TimestampMixin, Base):
    """A phone's push token (FCM, APNs or a webhook URL) owned by one user."""

    __tablename__ = "push_tokens"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    platform: Mapped[str] = mapped_column(String(16), nullable=False)
    token: Mapped[str] = mapped_column(String(4096), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False)

    __table_args__ = (
        Index("ix_push_tokens_token_hash", "token_hash", unique=True),
        Index("ix_push_tokens_user_id", "user_id"),
    )
