"""nginx sites and load-balancer pools: stored in the database, rendered, validated, applied.

Every change goes through `NginxControl.apply_locked`, which refuses anything the real
`nginx -t` rejects, and commits the row while still holding nginx's exclusive lock, taken
before the checks: a refused change leaves both the files and the rows as they were, and
concurrent changes (several requests, several processes) are serialised, so the files
always match the rows.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpsapi.config import Settings
from vpsapi.core.errors import Conflict, NotFound, Unprocessable, ValidationFailed
from vpsapi.core.security import Principal
from vpsapi.ops.audit.service import actor_name, record_audit
from vpsapi.ops.nginx.control import NginxControl, NginxRejected
from vpsapi.ops.nginx.models import NginxSite, UpstreamPool
from vpsapi.ops.nginx.render import (
    access_log_path,
    pool_file,
    render_pool,
    render_site,
    site_file,
)
from vpsapi.ops.nginx.schemas import (
    NginxCheck,
    PoolIn,
    PoolOut,
    SiteIn,
    SiteMetrics,
    SiteOut,
    check_client_can_ask,
)

SITE_FIELDS = tuple(SiteIn.model_fields)
POOL_FIELDS = tuple(PoolIn.model_fields)
# nginx's predefined "combined" format, which managed sites log in.
_COMBINED = re.compile(
    r'^\S+ \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+)[^"]*" (?P<status>\d{3}) (?P<bytes>\d+|-)'
)
METRICS_MAX_LINES = 1_000_000


# ---- sites ------------------------------------------------------------------------


def site_in(site: NginxSite) -> SiteIn:
    return SiteIn.model_validate({name: getattr(site, name) for name in SITE_FIELDS})


def site_out(site: NginxSite, settings: Settings) -> SiteOut:
    return SiteOut(
        **site_in(site).model_dump(),
        created_at=site.created_at,
        updated_at=site.updated_at,
        created_by=site.created_by,
        config_file=str(settings.nginx_conf_dir / site_file(site.id)),
    )


async def list_sites(session: AsyncSession) -> list[NginxSite]:
    return list((await session.scalars(select(NginxSite).order_by(NginxSite.id))).all())


async def get_site(session: AsyncSession, site_id: str) -> NginxSite:
    site = await session.get(NginxSite, site_id)
    if site is None:
        raise NotFound(f"Config with ID '{site_id}' not found")
    return site


async def _check_references(session: AsyncSession, body: SiteIn) -> None:
    """Bare-name backends must name a pool or the site's own inline upstream."""
    pools = set((await session.scalars(select(UpstreamPool.name))).all())
    inline = body.upstream.name if body.upstream else None
    if inline is not None and inline in pools:
        raise Conflict(f"upstream name {inline!r} is already used by a load-balancer pool")
    for location in body.locations:
        backend = location.backend
        if backend and ":" not in backend and backend not in pools and backend != inline:
            raise Unprocessable(f"backend {backend!r} is not a load-balancer pool")


def _site_changes(body: SiteIn, settings: Settings) -> dict[str, str | None]:
    content = render_site(body, settings.nginx_log_dir) if body.is_active else None
    return {site_file(body.id): content}


async def _commit_with_files(
    session: AsyncSession, nginx: NginxControl, changes: dict[str, str | None], conflict: str
) -> None:
    """Apply `changes` to nginx, then commit the rows. The caller holds
    `nginx.exclusive()` from its checks to here, so two requests never interleave and
    the files and the rows describe the same state. Should the database still refuse
    the commit (a writer that bypassed the lock), the files are put back: 409."""
    previous = nginx.current(changes)
    await nginx.apply_locked(changes)
    try:
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        await nginx.restore_locked(previous)
        raise Conflict(conflict) from exc
    except Exception:
        await nginx.restore_locked(previous)
        raise


async def _fresh_site(session: AsyncSession, site_id: str) -> NginxSite:
    """The row as committed now (read under the lock: another request may have changed it)."""
    site = await session.get(NginxSite, site_id, populate_existing=True)
    if site is None:
        raise NotFound(f"Config with ID '{site_id}' not found")
    return site


def _refuse_on_the_way_in(body: SiteIn) -> None:
    """Rules a site body meets on the way in, which are no schema rules so that a site
    stored before them still reads, renders and toggles as it was saved (a stored row is
    validated by the schema again on every read):

    - `..` in a file path (nginx reads `/var/../etc` as `/etc`: a path names where it
      reads, as written);
    - a backend naming a host no client can ask (an inactive site is not tested by nginx,
      and its backends' health checks would ask that host)."""
    paths = {"ssl_cert": body.ssl_cert, "ssl_key": body.ssl_key}
    paths |= {f"locations.{i}.root": place.root for i, place in enumerate(body.locations)}
    refused = [
        {"field": field, "message": "must not contain '..'"}
        for field, path in paths.items()
        if path and ".." in path
    ]
    backends = {f"locations.{i}.backend": place.backend for i, place in enumerate(body.locations)}
    if body.upstream is not None:
        backends |= {f"upstream.servers.{i}": s for i, s in enumerate(body.upstream.servers)}
    for field, backend in backends.items():
        if backend is None or (":" not in backend and "/" not in backend):
            continue  # a pool's name
        try:
            check_client_can_ask(backend)
        except ValueError as exc:
            refused.append({"field": field, "message": str(exc)})
    if refused:
        raise ValidationFailed(refused)


async def create_site(
    session: AsyncSession, nginx: NginxControl, actor: Principal, body: SiteIn
) -> NginxSite:
    _refuse_on_the_way_in(body)
    conflict = f"Config with ID '{body.id}' already exists"
    async with nginx.exclusive():
        if await session.get(NginxSite, body.id) is not None:
            raise Conflict(conflict)
        await _check_references(session, body)
        site = NginxSite(**body.model_dump(mode="json"), created_by=actor_name(actor))
        session.add(site)
        await record_audit(session, actor, "nginx.site.create", body.id, after=body.model_dump())
        await _commit_with_files(session, nginx, _site_changes(body, nginx.settings), conflict)
    return site


async def _update_site_locked(
    session: AsyncSession, nginx: NginxControl, actor: Principal, site: NginxSite, body: SiteIn
) -> NginxSite:
    before = site_in(site).model_dump()
    await _check_references(session, body)
    for name, value in body.model_dump(mode="json").items():
        setattr(site, name, value)
    site.updated_at = datetime.now(UTC)
    await record_audit(
        session, actor, "nginx.site.update", site.id, before=before, after=body.model_dump()
    )
    await _commit_with_files(
        session, nginx, _site_changes(body, nginx.settings), f"Config '{site.id}' changed"
    )
    return site


async def update_site(
    session: AsyncSession, nginx: NginxControl, actor: Principal, site: NginxSite, body: SiteIn
) -> NginxSite:
    _refuse_on_the_way_in(body)
    async with nginx.exclusive():
        site = await _fresh_site(session, site.id)
        return await _update_site_locked(session, nginx, actor, site, body)


async def toggle_site(
    session: AsyncSession, nginx: NginxControl, actor: Principal, site: NginxSite
) -> NginxSite:
    """Flip `is_active` of the row as it is under the lock (two toggles: two flips)."""
    async with nginx.exclusive():
        site = await _fresh_site(session, site.id)
        body = site_in(site).model_copy(update={"is_active": not site.is_active})
        return await _update_site_locked(session, nginx, actor, site, body)


async def delete_site(
    session: AsyncSession, nginx: NginxControl, actor: Principal, site: NginxSite
) -> None:
    async with nginx.exclusive():
        site = await _fresh_site(session, site.id)
        before = site_in(site).model_dump()
        await session.delete(site)
        await record_audit(session, actor, "nginx.site.delete", site.id, before=before)
        await _commit_with_files(
            session, nginx, {site_file(site.id): None}, f"Config '{site.id}' changed"
        )


async def check_new_site(session: AsyncSession, nginx: NginxControl, body: SiteIn) -> NginxCheck:
    """`check_site` of a body as `create_site` would take it."""
    _refuse_on_the_way_in(body)
    return await check_site(session, nginx, body)


async def check_site(session: AsyncSession, nginx: NginxControl, body: SiteIn) -> NginxCheck:
    """Run the real `nginx -t` on the configuration as it would be with `body` applied."""
    await _check_references(session, body)
    preview = render_site(body, nginx.settings.nginx_log_dir)
    try:
        output = await nginx.test_candidate({site_file(body.id): preview})
    except NginxRejected as exc:
        raise Unprocessable(
            f"Configuration validation failed: {exc.output.strip()}",
            code="NginxConfigInvalid",
            extra={
                "success": False,
                "valid": False,
                "output": exc.output.strip(),
                "config_preview": preview,
            },
        ) from exc
    return NginxCheck(
        success=True,
        valid=True,
        message="Configuration is valid",
        output=output.strip(),
        config_preview=preview,
    )


def site_metrics(site: NginxSite, settings: Settings) -> SiteMetrics:
    """Request counts, status classes and bytes from the site's own access log."""
    path = access_log_path(settings.nginx_log_dir, site.id)
    statuses: Counter[str] = Counter()
    methods: Counter[str] = Counter()
    total = sent = 0
    last: datetime | None = None
    size = 0
    if path.is_file():
        size = path.stat().st_size
        with path.open(errors="replace") as handle:
            for count, line in enumerate(handle):
                if count >= METRICS_MAX_LINES:
                    break
                match = _COMBINED.match(line)
                if match is None:
                    continue
                total += 1
                statuses[f"{match['status'][0]}xx"] += 1
                methods[match["method"]] += 1
                sent += int(match["bytes"]) if match["bytes"].isdigit() else 0
                last = _parse_time(match["time"]) or last
    return SiteMetrics(
        config_id=site.id,
        server_name=site.server_name,
        listen_port=site.listen_port,
        is_active=site.is_active,
        access_log_file=str(path) if path.is_file() else None,
        total_requests=total,
        status_classes={key: statuses.get(key, 0) for key in ("2xx", "3xx", "4xx", "5xx")},
        bytes_sent=sent,
        requests_by_method=dict(methods),
        last_activity=last,
        log_file_size=size,
    )


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
    except ValueError:
        return None


# ---- pools ------------------------------------------------------------------------


def pool_in(pool: UpstreamPool) -> PoolIn:
    return PoolIn.model_validate({name: getattr(pool, name) for name in POOL_FIELDS})


def pool_out(pool: UpstreamPool, settings: Settings) -> PoolOut:
    return PoolOut(
        **pool_in(pool).model_dump(),
        id=pool.id,
        created_at=pool.created_at,
        updated_at=pool.updated_at,
        created_by=pool.created_by,
        config_file=str(settings.nginx_conf_dir / pool_file(pool.name)),
    )


async def list_pools(session: AsyncSession) -> list[UpstreamPool]:
    return list((await session.scalars(select(UpstreamPool).order_by(UpstreamPool.name))).all())


async def get_pool(session: AsyncSession, name: str) -> UpstreamPool:
    pool = await session.scalar(select(UpstreamPool).where(UpstreamPool.name == name))
    if pool is None:
        raise NotFound(f"Load balancer pool '{name}' not found")
    return pool


async def _pool_users(session: AsyncSession, name: str) -> list[str]:
    return [
        site.id
        for site in await list_sites(session)
        if any(location.get("backend") == name for location in site.locations)
        or (site.upstream or {}).get("name") == name
    ]


async def _fresh_pool(session: AsyncSession, name: str) -> UpstreamPool:
    pool = await session.scalar(
        select(UpstreamPool)
        .where(UpstreamPool.name == name)
        .execution_options(populate_existing=True)
    )
    if pool is None:
        raise NotFound(f"Load balancer pool '{name}' not found")
    return pool


async def create_pool(
    session: AsyncSession, nginx: NginxControl, actor: Principal, body: PoolIn
) -> UpstreamPool:
    conflict = f"Load balancer pool '{body.name}' already exists"
    async with nginx.exclusive():
        existing = await session.scalar(select(UpstreamPool).where(UpstreamPool.name == body.name))
        if existing is not None or await _pool_users(session, body.name):
            raise Conflict(conflict)
        pool = UpstreamPool(**body.model_dump(mode="json"), created_by=actor_name(actor))
        session.add(pool)
        await record_audit(session, actor, "nginx.pool.create", body.name, after=body.model_dump())
        await _commit_with_files(
            session, nginx, {pool_file(body.name): render_pool(body)}, conflict
        )
    return pool


async def update_pool(
    session: AsyncSession, nginx: NginxControl, actor: Principal, pool: UpstreamPool, body: PoolIn
) -> UpstreamPool:
    if body.name != pool.name:
        raise Unprocessable("a pool cannot be renamed; create a new one")
    async with nginx.exclusive():
        pool = await _fresh_pool(session, pool.name)
        before = pool_in(pool).model_dump()
        for name, value in body.model_dump(mode="json").items():
            setattr(pool, name, value)
        pool.updated_at = datetime.now(UTC)
        await record_audit(
            session, actor, "nginx.pool.update", pool.name, before=before, after=body.model_dump()
        )
        await _commit_with_files(
            session,
            nginx,
            {pool_file(body.name): render_pool(body)},
            f"Load balancer pool '{pool.name}' changed",
        )
    return pool


async def delete_pool(
    session: AsyncSession, nginx: NginxControl, actor: Principal, pool: UpstreamPool
) -> None:
    async with nginx.exclusive():
        pool = await _fresh_pool(session, pool.name)
        users = await _pool_users(session, pool.name)
        if users:
            raise Conflict(f"Pool '{pool.name}' is used by: {', '.join(users)}")
        before = pool_in(pool).model_dump()
        await session.delete(pool)
        await record_audit(session, actor, "nginx.pool.delete", pool.name, before=before)
        await _commit_with_files(
            session,
            nginx,
            {pool_file(pool.name): None},
            f"Load balancer pool '{pool.name}' changed",
        )


async def known_backends(session: AsyncSession) -> dict[str, dict[str, Any]]:
    """Every backend the managed configuration proxies to: url -> where it is used."""
    backends: dict[str, dict[str, Any]] = {}
    for pool in await list_pools(session):
        for server in pool.servers:
            url = f"http://{server['address']}{pool.health_path if pool.health_check else '/'}"
            backends[url] = {"pool": pool.name, "health_check": pool.health_check}
    for site in await list_sites(session):
        for location in site.locations:
            backend = location.get("backend") or ""
            if backend.startswith(("http://", "https://")):
                backends.setdefault(backend, {"site": site.id, "health_check": True})
            elif ":" in backend:
                backends.setdefault(f"http://{backend}/", {"site": site.id, "health_check": True})
    return backends


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def managed_backend_url(url: str, known: dict[str, dict[str, Any]]) -> str | None:
    """The managed backend a check of `url` stands for: `url` as a pool or site lists it,
    or, asked for by its address alone (`127.0.0.1:3000`), the URL listed for that server
    (a pool lists its members with its health path). None for anything else: a non-admin
    does not choose what the server requests."""
    listed = {backend.rstrip("/"): backend for backend in known}
    if url.rstrip("/") in listed:
        return listed[url.rstrip("/")]
    if urlsplit(url).path in ("", "/"):
        return next((backend for backend in known if _origin(backend) == _origin(url)), None)
    return None
