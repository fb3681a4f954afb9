"""Render sites and pools into nginx configuration text.

Input is already validated by the schemas (no value can carry `;`, braces, quotes or
newlines), so rendering is plain string building.
"""

from __future__ import annotations

from pathlib import Path

from vpsapi.ops.nginx.control import MANAGED_PREFIX
from vpsapi.ops.nginx.schemas import HTTP_PORT, InlineUpstream, Location, PoolIn, SiteIn

HEADER = "# Managed by vpsapi ({what}). Changes made here are overwritten.\n"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
STREAM_READ_TIMEOUT_S = 3600
SECURITY_HEADERS = (
    'add_header X-Frame-Options "SAMEORIGIN" always;',
    'add_header X-Content-Type-Options "nosniff" always;',
    'add_header Referrer-Policy "strict-origin-when-cross-origin" always;',
)
GZIP_TYPES = "text/plain text/css application/json application/javascript text/xml"


def site_file(site_id: str) -> str:
    return f"{MANAGED_PREFIX}site-{site_id}.conf"


def pool_file(name: str) -> str:
    return f"{MANAGED_PREFIX}upstream-{name}.conf"


def access_log_path(log_dir: Path, site_id: str) -> Path:
    return log_dir / f"{MANAGED_PREFIX}{site_id}.access.log"


def render_pool(pool: PoolIn) -> str:
    lines = [HEADER.format(what=f"pool {pool.name}"), f"upstream {pool.name} {{"]
    if pool.method != "round_robin":
        lines.append(f"    {pool.method};")
    for server in pool.servers:
        options = f" weight={server.weight} max_fails={server.max_fails}"
        options += f" fail_timeout={server.fail_timeout}"
        lines.append(f"    server {server.address}{options}{' backup' if server.backup else ''};")
    lines += ["    keepalive 16;", "}", ""]
    return "\n".join(lines)


def _inline_upstream(upstream: InlineUpstream) -> list[str]:
    lines = [f"upstream {upstream.name} {{"]
    if upstream.method != "round_robin":
        lines.append(f"    {upstream.method};")
    health = " max_fails=3 fail_timeout=30s" if upstream.health_check else ""
    lines += [f"    server {server}{health};" for server in upstream.servers]
    lines += ["}", ""]
    return lines


def _proxy_target(backend: str) -> str:
    if backend.startswith(("http://", "https://")):
        return backend
    return f"http://{backend}"  # host:port or an upstream name


def _location(site: SiteIn, index: int, location: Location) -> list[str]:
    inner: list[str] = []
    if location.rate_limit:
        inner.append(f"limit_req zone=vpsapi_{site.id}_{index} burst=10 nodelay;")
    if location.client_max_body_size:
        inner.append(f"client_max_body_size {location.client_max_body_size};")
    if location.root is not None:
        inner += [f"root {location.root};", "try_files $uri $uri/ =404;"]
    else:
        assert location.backend is not None
        target = _proxy_target(location.backend)
        streaming = location.websocket or location.sse
        inner.append(f"proxy_pass {target};")
        version = location.proxy_http_version or ("1.1" if streaming else None)
        if version:
            inner.append(f"proxy_http_version {version};")
        inner += [
            "proxy_set_header Host $host;",
            "proxy_set_header X-Real-IP $remote_addr;",
            "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "proxy_set_header X-Forwarded-Proto $scheme;",
        ]
        if location.websocket:
            inner += [
                "proxy_set_header Upgrade $http_upgrade;",
                'proxy_set_header Connection "upgrade";',
            ]
        elif location.sse:
            inner.append('proxy_set_header Connection "";')
        if location.sse:
            inner += ["proxy_buffering off;", "proxy_cache off;"]
        read_timeout = max(location.read_timeout, STREAM_READ_TIMEOUT_S if streaming else 0)
        inner += ["proxy_connect_timeout 10s;", f"proxy_read_timeout {read_timeout}s;"]
        if target.startswith("https://"):
            inner.append("proxy_ssl_server_name on;")
            if location.ssl_verify and CA_BUNDLE.exists():
                inner += [
                    "proxy_ssl_verify on;",
                    f"proxy_ssl_trusted_certificate {CA_BUNDLE};",
                ]
        for name, value in location.custom_headers.items():
            inner.append(f'proxy_set_header {name} "{value}";')
    return [f"    location {location.path} {{", *(f"        {line}" for line in inner), "    }"]


def render_site(site: SiteIn, log_dir: Path) -> str:
    lines = [HEADER.format(what=f"site {site.id}")]
    if site.rate_limit_global:
        lines.append(
            f"limit_req_zone $binary_remote_addr zone=vpsapi_{site.id}_global:10m "
            f"rate={site.rate_limit_global};"
        )
    for index, location in enumerate(site.locations):
        if location.rate_limit:
            lines.append(
                f"limit_req_zone $binary_remote_addr zone=vpsapi_{site.id}_{index}:10m "
                f"rate={location.rate_limit};"
            )
    if site.upstream is not None:
        lines += _inline_upstream(site.upstream)
    tls = site.ssl_cert is not None
    lines += ["server {", f"    listen {site.listen_port}{' ssl' if tls else ''};"]
    if site.server_name:
        lines.append(f"    server_name {site.server_name};")
    if tls:
        lines += [
            f"    ssl_certificate {site.ssl_cert};",
            f"    ssl_certificate_key {site.ssl_key};",
            "    ssl_protocols TLSv1.2 TLSv1.3;",
            "    ssl_session_cache shared:vpsapi_ssl:10m;",
        ]
    if site.access_log_enabled:
        lines.append(f"    access_log {access_log_path(log_dir, site.id)} combined;")
    else:
        lines.append("    access_log off;")
    lines.append(f"    error_log {log_dir / f'{MANAGED_PREFIX}{site.id}.error.log'};")
    if site.gzip_enabled:
        lines += ["    gzip on;", f"    gzip_types {GZIP_TYPES};"]
    if site.security_headers:
        lines += [f"    {header}" for header in SECURITY_HEADERS]
        if tls:
            lines.append('    add_header Strict-Transport-Security "max-age=31536000" always;')
    if site.rate_limit_global:
        lines.append(f"    limit_req zone=vpsapi_{site.id}_global burst=20 nodelay;")
    for index, location in enumerate(site.locations):
        lines += _location(site, index, location)
    lines.append("}")
    if site.ssl_redirect:
        names = f"    server_name {site.server_name};\n" if site.server_name else ""
        lines.append(
            f"server {{\n    listen {HTTP_PORT};\n{names}    return 301 https://$host$request_uri;\n}}"
        )
    lines.append("")
    return "\n".join(lines)
