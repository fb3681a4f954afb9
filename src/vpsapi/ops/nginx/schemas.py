"""Request and response models of nginx sites and pools.

Every value that reaches an nginx file is checked against a strict pattern here, so no
request can inject directives: braces, semicolons, quotes and newlines never pass.
Field names follow seed 002's original API (`is_active`, `listen_port`, `locations`...).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from vpsapi.core.schemas import JsonBool, NumberNotBool

SiteId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
PoolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")]
RateLimit = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,5}r/[sm]$")]
BodySize = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}[kKmMgG]?$")]

FilePath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./*-]{1,400}$")]

HTTP_PORT = 80  # where an ssl_redirect server listens

_HOSTNAME = re.compile(
    r"^(\*\.)?(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)
_HOST = re.compile(r"^([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])$")
_URL_PATH = re.compile(r"^/[A-Za-z0-9_./~%-]*$")
_LOCATION_PATH = re.compile(r"^/[A-Za-z0-9_./~-]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# No unpaired surrogate either: it cannot be written to a file (it was a 500).
_HEADER_VALUE = re.compile(r"^[^\"'\\{};\r\n\x00-\x1f$\ud800-\udfff]{0,500}$")


def check_client_can_ask(backend: str) -> None:
    """Refuse a backend (URL or `host:port`) naming a host no HTTP client or resolver takes,
    which the patterns above let through: digits and dots that are no IPv4 address
    (`999.1.1.1`), a bad IPv6 literal, a punycode label that decodes to nothing (`xn--zz`).
    Checked where bodies come in, not by the schema: a row stored before still reads."""
    url = backend if backend.startswith(("http://", "https://")) else f"http://{backend}/"
    try:
        host = httpx.URL(url).host  # decoding the host is the check
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ValueError(f"{backend!r} names no valid host name or IP address") from exc
    if not host:
        raise ValueError(f"{backend!r} names no host")


def check_address(value: str) -> str:
    """`host:port` (IPv4, name or [IPv6])."""
    host, sep, port = value.rpartition(":")
    if not sep or not _HOST.match(host) or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("must be host:port, e.g. 127.0.0.1:3000")
    return value


def check_backend(value: str) -> str:
    """`http(s)://host[:port][/path]`, `host:port`, or the name of a load-balancer pool."""
    if value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        if (
            not parts.hostname
            or not _HOST.match(parts.netloc.rsplit(":", 1)[0] or "-")
            or parts.netloc.endswith(":")  # `http://ftp://x`: host "ftp", no port
        ):
            raise ValueError("backend URL must be http(s)://host[:port][/path]")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError("backend port must be between 1 and 65535") from exc
        if port is not None and not 1 <= port <= 65535:
            raise ValueError("backend port must be between 1 and 65535")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("backend URL may not carry credentials, a query or a fragment")
        if parts.path and not _URL_PATH.match(parts.path):
            raise ValueError("backend URL path has characters that are not allowed")
        return value
    if ":" in value:
        return check_address(value)
    if re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", value):
        return value  # a pool name; the service checks that it exists
    raise ValueError("backend must be http(s)://host[:port], host:port or a pool name")


class Location(BaseModel):
    path: str = Field(examples=["/"])
    backend: str | None = Field(default=None, examples=["http://localhost:3000"])
    # Serve files from a directory instead of proxying.
    root: FilePath | None = None
    websocket: JsonBool = False
    # Server-sent events: no buffering, long read timeout.
    sse: JsonBool = False
    ssl_verify: JsonBool = True
    custom_headers: dict[str, str] = Field(default_factory=dict)
    rate_limit: RateLimit | None = None
    client_max_body_size: BodySize | None = "1m"
    proxy_http_version: Literal["1.0", "1.1"] | None = None
    read_timeout: NumberNotBool[Annotated[int, Field(ge=1, le=86400)]] = 60

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not _LOCATION_PATH.match(value) or ".." in value or len(value) > 200:
            raise ValueError("path must start with / and use only letters, digits and _ . / ~ -")
        return value

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str | None) -> str | None:
        return None if value is None else check_backend(value)

    @field_validator("custom_headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 32:
            raise ValueError("at most 32 custom headers")
        for name, header_value in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} is not allowed")
            if not _HEADER_VALUE.match(header_value):
                raise ValueError(f"header {name} value has characters that are not allowed")
        return value

    @model_validator(mode="after")
    def _target(self) -> Location:
        if (self.backend is None) == (self.root is None):
            raise ValueError("a location needs exactly one of backend or root")
        return self


class PoolServer(BaseModel):
    address: str = Field(examples=["127.0.0.1:3000"])
    weight: NumberNotBool[Annotated[int, Field(ge=1, le=1000)]] = 1
    max_fails: NumberNotBool[Annotated[int, Field(ge=0, le=1000)]] = 3
    fail_timeout: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,5}[smh]?$")] = "30s"
    backup: JsonBool = False

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_address(value)

    @classmethod
    def coerce(cls, value: Any) -> Any:
        return {"address": value} if isinstance(value, str) else value


Method = Literal["round_robin", "least_conn", "ip_hash"]


class InlineUpstream(BaseModel):
    """Seed 002's per-site `upstream` block."""

    name: PoolName
    servers: list[str] = Field(min_length=1, max_length=64)
    method: Method = "round_robin"
    health_check: JsonBool = True

    @field_validator("servers")
    @classmethod
    def _servers(cls, value: list[str]) -> list[str]:
        return [check_address(server) for server in value]


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: SiteId = Field(examples=["example-app"])
    server_name: str | None = Field(default=None, examples=["example.com"])
    listen_port: NumberNotBool[Annotated[int, Field(ge=1, le=65535)]] = 80
    locations: list[Location] = Field(min_length=1, max_length=64)
    upstream: InlineUpstream | None = None
    is_active: JsonBool = True
    ssl_cert: FilePath | None = None
    ssl_key: FilePath | None = None
    ssl_redirect: JsonBool = False
    rate_limit_global: RateLimit | None = None
    access_log_enabled: JsonBool = True
    gzip_enabled: JsonBool = True
    security_headers: JsonBool = True

    @field_validator("server_name")
    @classmethod
    def _server_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if re.search(r"[^A-Za-z0-9.*_ -]", value):
            raise ValueError("server_name may hold only host names separated by spaces")
        names = value.split()
        if len(names) > 32:
            raise ValueError("at most 32 server names")
        for name in names:
            if name != "_" and not _HOSTNAME.match(name):
                raise ValueError(f"{name!r} is not a valid server name")
        return " ".join(names)

    @model_validator(mode="after")
    def _consistent(self) -> SiteIn:
        if (self.ssl_cert is None) != (self.ssl_key is None):
            raise ValueError("ssl_cert and ssl_key go together")
        if self.ssl_redirect and self.ssl_cert is None:
            raise ValueError("ssl_redirect needs ssl_cert and ssl_key")
        if self.ssl_redirect and self.listen_port == HTTP_PORT:
            # The redirect is a server on port 80 with the same names: nginx would keep one.
            raise ValueError("ssl_redirect answers on port 80: listen on another, e.g. 443")
        paths = [location.path for location in self.locations]
        if len(paths) != len(set(paths)):
            raise ValueError("location paths must be unique")
        return self


class SiteUpdate(SiteIn):
    """PUT body: the whole site; `id` may be omitted (the path names the site)."""

    id: SiteId | None = None  # type: ignore[assignment]


class SiteOut(SiteIn):
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    config_file: str


class NginxCheck(BaseModel):
    success: bool
    valid: bool
    message: str
    output: str = ""
    config_preview: str | None = None


class SiteMetrics(BaseModel):
    config_id: str
    server_name: str | None
    listen_port: int
    is_active: bool
    access_log_file: str | None
    total_requests: int
    status_classes: dict[str, int]
    bytes_sent: int
    requests_by_method: dict[str, int]
    last_activity: datetime | None
    log_file_size: int


class PoolIn(BaseModel):
    name: PoolName
    method: Method = "round_robin"
    servers: list[PoolServer] = Field(min_length=1, max_length=64)
    health_check: JsonBool = True
    health_path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./~-]{0,199}$")] = "/"

    @field_validator("servers", mode="before")
    @classmethod
    def _servers(cls, value: Any) -> Any:
        return [PoolServer.coerce(item) for item in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _not_only_backups(self) -> PoolIn:
        if all(server.backup for server in self.servers):
            raise ValueError("a pool needs at least one server that is not a backup")
        if self.method == "ip_hash" and any(server.backup for server in self.servers):
            raise ValueError("nginx does not allow backup servers with ip_hash")
        return self


class PoolOut(PoolIn):
    id: str
    created_at: datetime
    updated_at: datetime
    created_by: str | None = None
    config_file: str


class BackendHealth(BaseModel):
    backend: str
    healthy: bool
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    checked_at: datetime
