"""nginx sites and load-balancer pools, the source the managed config files are rendered from."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from vpsapi.core.db import Base, IdMixin, TimestampMixin


class NginxSite(TimestampMixin, Base):
    __tablename__ = "ops_nginx_sites"

    # Chosen by the operator (seed 002: `"id": "example-app"`); also the file name.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    server_name: Mapped[str | None] = mapped_column(String(1000))
    listen_port: Mapped[int] = mapped_column(Integer, nullable=False)
    locations: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    # An inline upstream for this site only (seed 002's `upstream`); pools are shared ones.
    upstream: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    ssl_cert: Mapped[str | None] = mapped_column(String(500))
    ssl_key: Mapped[str | None] = mapped_column(String(500))
    ssl_redirect: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    rate_limit_global: Mapped[str | None] = mapped_column(String(16))
    access_log_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    gzip_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    security_headers: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    created_by: Mapped[str | None] = mapped_column(String(255))


class UpstreamPool(IdMixin, TimestampMixin, Base):
    __tablename__ = "ops_upstream_pools"

    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    method: Mapped[str] = mapped_column(String(16), nullable=False, default="round_robin")
    # [{address, weight, max_fails, fail_timeout, backup}]
    servers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, nullable=False)
    health_check: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    health_path: Mapped[str] = mapped_column(String(200), nullable=False, default="/")
    created_by: Mapped[str | None] = mapped_column(String(255))
