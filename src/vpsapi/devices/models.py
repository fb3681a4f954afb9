"""Camera devices and the short-lived bindings of the seed-003 setup flow."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
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
    name: Mapped[str] = mapped_column(String(255), nullable=False)  # seed: device_name
    # Camera password sealed with the device parameter keys; never sent back.
    password_sealed: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_user_devices_user_device", "user_id", "device_id", unique=True),
        Index("ix_user_devices_device_id", "device_id"),
    )


class PushToken(IdMixin, TimestampMixin, Base):
    """A phone's push token owned by one user; `platform` (fcm, apns, webhook) picks the
    provider. Webhook tokens are opaque ids forwarded to the operator's PUSH_WEBHOOK_URL,
    never addresses the server would call."""

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


class CloudVideo(IdMixin, TimestampMixin, Base):
    """A clip a camera uploaded (or is uploading) to object storage (seed 003's schema;
    signed URLs are made per request, so only the upload URL's expiry is kept)."""

    __tablename__ = "cloud_videos"

    device_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("devices.id", ondelete="CASCADE"), nullable=False
    )
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    file_size: Mapped[int | None] = mapped_column(BigInteger)
    duration: Mapped[int | None] = mapped_column(Integer)  # seconds
    start_time: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime())
    alarm_type: Mapped[str | None] = mapped_column(String(32))
    storage_path: Mapped[str] = mapped_column(String(512), nullable=False)
    thumbnail_path: Mapped[str | None] = mapped_column(String(512))
    is_uploaded: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Until when the camera's upload URL is valid; unconfirmed rows are removed after it.
    upload_expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)

    __table_args__ = (
        Index("ix_cloud_videos_device_time", "device_id", "start_time"),
        Index("ix_cloud_videos_pending", "is_uploaded", "upload_expires_at"),
        Index("ix_cloud_videos_created_at", "created_at"),  # the retention sweep
    )
