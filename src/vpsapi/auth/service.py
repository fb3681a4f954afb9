"""Users, logins, refresh-token rotation, API keys: no HTTP here."""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Literal, Protocol

import structlog
from sqlalchemy import ColumnElement, and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from vpsapi.auth.models import ApiKey, AuthSession, User
from vpsapi.auth.passwords import check_new_password
from vpsapi.config import Settings, SettingsError
from vpsapi.core.db import Database, answer_if_deleted_meanwhile, new_id, utcnow
from vpsapi.core.errors import BadRequest, Conflict, NotFound, Unauthorized
from vpsapi.core.logging import SECURITY_LOGGER
from vpsapi.core.pagination import encode_cursor, newer_than
from vpsapi.core.security import (
    API_KEY_PREFIX,
    API_KEY_SUBJECT_PREFIX,
    CLIENT_SUBJECT_PREFIX,
    ROLES,
    Principal,
    Role,
    TokenCodec,
    constant_time_equals,
    generate_api_key,
    hash_api_key,
    hash_password,
    password_needs_rehash,
    verify_password,
)

security_log = structlog.get_logger(SECURITY_LOGGER)

SHARED_CLIENT = f"{CLIENT_SUBJECT_PREFIX}shared"


class Keep(Enum):
    """An update's default for a field that None clears: leave the field as it is."""

    KEEP = "keep"


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User


# ---- users ---------------------------------------------------------------------------


def _normalize_email(email: str) -> str:
    return email.strip().lower()


async def find_user_by_login(session: AsyncSession, login: str) -> User | None:
    """A user by email or username (case-insensitive). Usernames differing only in case
    are refused now, but older data may hold some: then only the exact spelling counts."""
    typed = login.strip()
    column = User.email if "@" in typed else func.lower(User.username)
    found = list((await session.execute(select(User).where(column == typed.lower()))).scalars())
    if len(found) > 1:
        found = [user for user in found if user.username == typed]
    return found[0] if len(found) == 1 else None


async def _email_taken(session: AsyncSession, email: str, *, besides: str = "") -> bool:
    taken = await session.execute(select(User.id).where(User.email == email, User.id != besides))
    return taken.first() is not None


async def _username_taken(session: AsyncSession, username: str, *, besides: str = "") -> bool:
    taken = await session.execute(
        select(User.id).where(func.lower(User.username) == username.lower(), User.id != besides)
    )
    return taken.first() is not None


# What a username may hold (schemas.Username checks the same for names people choose).
_USERNAME_DISALLOWED = re.compile(r"[^A-Za-z0-9_.\-]")


async def _username_from_email(session: AsyncSession, email: str) -> str:
    """A free, valid username made from the email's local part: `jane`, `jane-2`, …"""
    base = _USERNAME_DISALLOWED.sub("", email.split("@", 1)[0])[:56]
    if len(base) < 3:
        base = f"user-{base}" if base else "user"
    candidate = base
    for number in range(2, 100):
        if not await _username_taken(session, candidate):
            return candidate
        candidate = f"{base}-{number}"
    return f"{base}-{secrets.token_hex(3)}"


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    role: Role = "user",
    username: str | None = None,
    organization_id: str | None = None,
) -> User:
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}")
    email = _normalize_email(email)
    if await _email_taken(session, email) or (
        username and await _username_taken(session, username)
    ):
        raise Conflict("A user with this email or username already exists")
    username = username or await _username_from_email(session, email)
    user = User(
        email=email,
        username=username,
        password_hash=await hash_password(password),
        role=role,
        organization_id=organization_id,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create won the race
        raise Conflict("A user with this email or username already exists") from exc
    return user


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("User not found")
    return user


async def get_caller(session: AsyncSession, principal: Principal) -> User:
    """The caller's own account. Gone since the credential was checked (deleted while the
    request ran), the credential is refused as it is from then on."""
    user = await session.get(User, principal.user_id or "")
    if user is None:
        raise credential_gone(principal)
    return user


async def list_users(
    session: AsyncSession, *, limit: int, offset: int = 0, cursor: str | None = None
) -> tuple[list[User], str | None]:
    """A page of users, oldest first, and the cursor of the next one (None at the end).
    The page starts after `cursor`'s user (users deleted meanwhile shift nothing), or
    `offset` users in; the cursor it hands out is always the keyset one."""
    query = select(User).order_by(User.created_at, User.id)
    if cursor is not None:
        query = query.where(newer_than(User.created_at, User.id, cursor))
    rows = list((await session.execute(query.offset(offset).limit(limit + 1))).scalars())
    last = rows[limit - 1] if len(rows) > limit else None
    return rows[:limit], encode_cursor(last.created_at, last.id) if last is not None else None


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    email: str | None = None,
    username: str | None = None,
    password: str | None = None,
    role: Role | None = None,
    is_active: bool | None = None,
    organization_id: str | Literal[Keep.KEEP] | None = Keep.KEEP,
) -> User:
    """Set the fields given; None leaves one as it is, except `organization_id`, which
    None clears (KEEP leaves it)."""
    # Both checked before either is set: a later query would flush a taken email first
    # (an IntegrityError outside the flush below, a 500).
    email = None if email is None else _normalize_email(email)
    if (email is not None and await _email_taken(session, email, besides=user.id)) or (
        username is not None and await _username_taken(session, username, besides=user.id)
    ):
        raise Conflict("A user with this email or username already exists")
    if email is not None:
        user.email = email
    if username is not None:
        user.username = username
    await _flush_user(session)  # now: a later query would flush a name taken meanwhile
    if role is not None:
        if role not in ROLES:
            raise BadRequest(f"role must be one of {', '.join(ROLES)}")
        user.role = role
    if organization_id is not Keep.KEEP:
        user.organization_id = organization_id
    if password is not None:
        user.password_hash = await hash_password(password)
        await revoke_user_sessions(session, user.id, reason="password_changed")
    if is_active is not None:
        user.is_active = is_active
        if not is_active:
            await revoke_user_sessions(session, user.id, reason="deactivated")
    await _flush_user(session)
    return user


async def _flush_user(session: AsyncSession) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("A user with this email or username already exists") from exc


async def delete_user(session: AsyncSession, user: User) -> None:
    await session.delete(user)
    await session.flush()


async def count_admins(session: AsyncSession) -> int:
    query = select(func.count()).select_from(User).where(User.role == "admin", User.is_active)
    return (await session.execute(query)).scalar_one()


async def bootstrap_admin(session: AsyncSession, settings: Settings) -> str | None:
    """Create the first admin when there are no users. Returns a generated password
    (also written to DATA_DIR/admin-password, mode 0600), or None."""
    if (await session.execute(select(User.id).limit(1))).first():
        return None
    generated = settings.admin_password is None
    password = (
        secrets.token_urlsafe(18)
        if settings.admin_password is None
        else settings.admin_password.get_secret_value()
    )
    try:
        # Checked here, not with the settings: once the admin exists the value is unused,
        # and an old .env keeping a short one must not stop the server.
        check_new_password(password, "ADMIN_PASSWORD")
    except ValueError as exc:
        raise SettingsError(
            f"{exc}: the first admin's password follows the rule of every password set "
            "(as through /api/v1/users)"
        ) from None
    await create_user(
        session,
        email=settings.admin_email,
        username=settings.admin_username,
        password=password,
        role="admin",
    )
    if not generated:
        return None
    _write_private(settings.ensure_data_dir() / "admin-password", password)
    return password


def _write_private(path: Path, content: str) -> None:
    """Write a file only its owner can read (0600 from creation, never wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content + "\n")


# ---- logins and tokens ---------------------------------------------------------------


def user_claims(user: User, session_id: str) -> dict[str, str]:
    return {"sub": f"user:{user.id}", "sid": session_id, "role": user.role}


async def login(
    session: AsyncSession,
    codec: TokenCodec,
    *,
    login_name: str,
    password: str,
    ip: str | None,
    user_agent: str | None,
) -> IssuedTokens:
    user = await find_user_by_login(session, login_name)
    if not await verify_password(password, user.password_hash if user else None) or user is None:
        security_log.warning("login_failed", ip=ip, reason="bad_credentials")
        raise _bad_credentials(login_name)
    if not user.is_active:
        security_log.warning("login_failed", ip=ip, reason="inactive", user_id=user.id)
        raise Unauthorized("Account is disabled")
    if password_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
    user.last_login_at = utcnow()
    auth_session = AuthSession(
        id=new_id(),
        user_id=user.id,
        refresh_jti=new_id(),
        expires_at=utcnow() + timedelta(seconds=codec.refresh_ttl),
        ip=ip,
        user_agent=(user_agent or "")[:255] or None,
    )
    session.add(auth_session)
    # Deleted by a concurrent request since the lookup above: as the next try will be.
    with answer_if_deleted_meanwhile(_bad_credentials(login_name)):
        await session.flush()
    security_log.info("login_succeeded", ip=ip, user_id=user.id)
    return _issue(codec, user, auth_session.id, auth_session.refresh_jti)


def _bad_credentials(login_name: str) -> Unauthorized:
    """In the words of what was sent: seed 001 signs in by email, seed 002 by username."""
    sent = "email" if "@" in login_name else "username"
    return Unauthorized(f"Invalid {sent} or password")


def _issue(codec: TokenCodec, user: User, session_id: str, refresh_jti: str) -> IssuedTokens:
    access = codec.access_token(user_claims(user, session_id))
    refresh = codec.encode(
        {"sub": f"user:{user.id}", "sid": session_id, "jti": refresh_jti},
        codec.refresh_ttl,
        "refresh",
    )
    return IssuedTokens(access, refresh, codec.access_ttl, user)


async def refresh(
    session: AsyncSession,
    codec: TokenCodec,
    refresh_token: str,
    *,
    ip: str | None,
    reuse_seconds: int,
) -> IssuedTokens:
    """Rotate a login's refresh token. The token rotated last, presented again within
    `reuse_seconds` of its rotation, gets the login's current refresh token (not rotated
    again: every caller of a burst then holds the one valid token); any other old token
    revokes the login."""
    claims = codec.decode(refresh_token, token_type="refresh")
    auth_session = await session.get(AuthSession, str(claims.get("sid", "")))
    if auth_session is None or auth_session.revoked_at is not None:
        raise Unauthorized("Refresh token revoked")
    presented = str(claims.get("jti", ""))
    refresh_jti = new_id()
    # Conditional update: of two concurrent uses of one token, only one can win.
    result = await session.execute(
        update(AuthSession)
        .where(AuthSession.id == auth_session.id, AuthSession.refresh_jti == presented)
        .where(AuthSession.revoked_at.is_(None))
        .values(
            refresh_jti=refresh_jti,
            previous_refresh_jti=presented,
            refreshed_at=utcnow(),
            expires_at=utcnow() + timedelta(seconds=codec.refresh_ttl),
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = await _current_jti_if_just_rotated(
            session, auth_session.id, presented, reuse_seconds
        )
        if current is None:
            await _revoke_session(session, auth_session.id, "refresh_reuse")
            security_log.warning(
                "refresh_token_reuse",
                ip=ip,
                user_id=auth_session.user_id,
                session_id=auth_session.id,
            )
            # Commit the revocation even though the request fails.
            await session.commit()
            raise Unauthorized("Refresh token already used; all sessions of this login revoked")
        # Answered with the login's current token, the row left as it is (not through
        # the loaded entity either: its flush would write a jti this request does not own).
        refresh_jti = current
        security_log.info(
            "refresh_token_reuse_allowed",
            ip=ip,
            user_id=auth_session.user_id,
            session_id=auth_session.id,
        )
    user = await session.get(User, auth_session.user_id)
    if user is None or not user.is_active:
        raise Unauthorized("Account is disabled")
    return _issue(codec, user, auth_session.id, refresh_jti)


async def _current_jti_if_just_rotated(
    session: AsyncSession, session_id: str, presented: str, reuse_seconds: int
) -> str | None:
    """The login's current refresh jti when `presented` is the one rotated last, within
    `reuse_seconds`, and the login is not revoked; else None (a reuse to treat as theft).
    Read afresh, not from the session's identity map: the conditional update lost to a
    rotation committed since (PostgreSQL's update waited for it, SQLite's write lock too),
    and only the row as it is now tells whether `presented` was that rotation's token."""
    if reuse_seconds <= 0:
        return None
    row = (
        await session.execute(
            select(AuthSession.refresh_jti).where(
                AuthSession.id == session_id,
                AuthSession.previous_refresh_jti == presented,
                AuthSession.refreshed_at > utcnow() - timedelta(seconds=reuse_seconds),
                AuthSession.revoked_at.is_(None),
            )
        )
    ).first()
    return None if row is None else row.refresh_jti


async def _revoke_session(session: AsyncSession, session_id: str, reason: str) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


async def revoke_user_sessions(session: AsyncSession, user_id: str, reason: str) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )


async def logout(
    session: AsyncSession,
    codec: TokenCodec,
    credential: str | None,
    refresh_token: str | None,
    *,
    ip: str | None,
) -> None:
    """End the login(s) the tokens belong to. Either token is enough (an access token may
    have expired), and a login already ended stays ended (logging out twice is fine). An
    API key identifies its caller but has no login to end."""
    if credential and credential.startswith(API_KEY_PREFIX):
        await principal_from_api_key(session, credential, ip)
        return
    access_claims: dict[str, object] | None = None
    refused: Unauthorized | None = None
    if credential:
        try:
            access_claims = codec.decode(credential)
        except Unauthorized as exc:
            refused = exc
    refresh_claims: dict[str, object] | None = None
    if refresh_token:
        try:
            refresh_claims = codec.decode(refresh_token, token_type="refresh")
        except Unauthorized as exc:
            refused = refused or exc
    if access_claims and refresh_claims and refresh_claims.get("sub") != access_claims.get("sub"):
        refresh_claims = None  # someone else's login is not this caller's to end
    if access_claims is None and refresh_claims is None:
        raise refused or Unauthorized("No token provided")
    for claims in (access_claims, refresh_claims):
        if claims and claims.get("sid"):
            await _revoke_session(session, str(claims["sid"]), "logout")


async def exchange_api_key(
    session: AsyncSession, codec: TokenCodec, settings: Settings, key: str | None, ip: str | None
) -> str:
    """Seed 000's `POST /api/auth/token`: the shared API_KEY or an active personal key."""
    if key:
        if settings.api_key is not None and constant_time_equals(
            key, settings.api_key.get_secret_value()
        ):
            # Seed 000's claims (`client`, `timestamp` in ms) beside our own.
            return codec.access_token(
                {"sub": SHARED_CLIENT, "client": "vercel-app", "timestamp": int(time.time() * 1000)}
            )
        if key.startswith(API_KEY_PREFIX):
            api_key, user = await _active_api_key(session, key)
            if api_key is not None and user is not None:
                return codec.access_token(
                    {
                        "sub": f"{API_KEY_SUBJECT_PREFIX}{api_key.id}",
                        "client": api_key.name,
                        "role": user.role,
                    }
                )
    security_log.warning("Invalid API key attempt", ip=ip)
    raise Unauthorized("Invalid API key")


async def _active_api_key(session: AsyncSession, key: str) -> tuple[ApiKey | None, User | None]:
    row = (
        await session.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == hash_api_key(key))
        )
    ).first()
    if row is None:
        return None, None
    api_key, user = row
    now = utcnow()
    if api_key.revoked_at is not None or not user.is_active:
        return None, None
    if api_key.expires_at is not None and api_key.expires_at <= now:
        return None, None
    # Touch at most once a minute: a write per request would serialise hot keys. Written
    # at once, not at the flush: a key deleted meanwhile (its owner deleted while this
    # request ran) matches no row, and is refused as it will be from now on.
    if api_key.last_used_at is None or now - api_key.last_used_at > timedelta(minutes=1):
        touched = await session.execute(
            update(ApiKey)
            .where(ApiKey.id == api_key.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
        if touched.rowcount == 0:  # type: ignore[attr-defined]
            return None, None
        set_committed_value(api_key, "last_used_at", now)
    return api_key, user


class _UserFacts(Protocol):
    """What a principal needs of a user: a `User` or a row of those columns."""

    id: str
    role: str
    email: str
    username: str


def _user_principal(
    user: _UserFacts, claims: dict[str, object], api_key_id: str | None = None
) -> Principal:
    return Principal(
        kind="user" if api_key_id is None else "api_key",
        subject=f"user:{user.id}",
        role=user.role,  # type: ignore[arg-type]
        user_id=user.id,
        email=user.email,
        username=user.username,
        api_key_id=api_key_id,
        claims=dict(claims),
    )


async def principal_from_api_key(session: AsyncSession, key: str, ip: str | None) -> Principal:
    api_key, user = await _active_api_key(session, key)
    if api_key is None or user is None:
        security_log.warning("Invalid API key attempt", ip=ip)
        raise Unauthorized("Invalid API key")
    return _user_principal(user, {}, api_key.id)


def token_revoked() -> Unauthorized:
    """The answer to a token whose login ended or whose user is gone, deleted before the
    request or while it ran."""
    return Unauthorized("Token revoked")


def credential_gone(principal: Principal) -> Unauthorized:
    """The answer to a caller whose user was deleted while the request ran: what the same
    credential gets from then on."""
    return Unauthorized("Invalid API key") if principal.kind == "api_key" else token_revoked()


async def principal_from_token(session: AsyncSession, codec: TokenCodec, token: str) -> Principal:
    claims = codec.decode(token)
    subject = claims.get("sub")
    if subject is None and isinstance(claims.get("client"), str):
        # Seed 000's own token shape, `{client, timestamp}` signed with JWT_SECRET (e.g. by
        # the Node service this one replaces): the shared client, as that service read it.
        subject = SHARED_CLIENT
    if not isinstance(subject, str):
        raise Unauthorized("Invalid token")
    kind, _, ident = subject.partition(":")
    if subject == SHARED_CLIENT:
        return Principal(kind="client", subject=SHARED_CLIENT, role="user", claims=claims)
    if kind == "user":
        # Columns, not the User entity: this runs on every request, and loading an entity
        # costs several times a plain row.
        row = (
            await session.execute(
                select(
                    User.id,
                    User.role,
                    User.email,
                    User.username,
                    User.is_active,
                    AuthSession.revoked_at,
                )
                .join(AuthSession, AuthSession.user_id == User.id)
                .where(User.id == ident, AuthSession.id == str(claims.get("sid", "")))
            )
        ).first()
        if row is None or row.revoked_at is not None:
            raise token_revoked()
        if not row.is_active:
            raise Unauthorized("Account is disabled")
        return _user_principal(row, claims)
    if subject.startswith(API_KEY_SUBJECT_PREFIX):
        # A token exchanged for a key lives no longer than the key: revoked or expired,
        # the key's tokens are refused too.
        key_row = (
            await session.execute(
                select(
                    ApiKey.id.label("api_key_id"),
                    ApiKey.revoked_at,
                    ApiKey.expires_at,
                    User.id,
                    User.role,
                    User.email,
                    User.username,
                    User.is_active,
                )
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.id == ident)
            )
        ).first()
        if key_row is None or key_row.revoked_at is not None or not key_row.is_active:
            raise token_revoked()
        if key_row.expires_at is not None and key_row.expires_at <= utcnow():
            raise Unauthorized("API key expired")
        return _user_principal(key_row, claims, key_row.api_key_id)
    raise Unauthorized("Invalid token")


# ---- API keys ------------------------------------------------------------------------


async def create_api_key(
    session: AsyncSession, user_id: str, name: str, expires_in_days: int | None
) -> tuple[ApiKey, str]:
    key = generate_api_key()
    api_key = ApiKey(
        user_id=user_id,
        name=name,
        prefix=key[: len(API_KEY_PREFIX) + 6],
        key_hash=hash_api_key(key),
        expires_at=(utcnow() + timedelta(days=expires_in_days)) if expires_in_days else None,
    )
    session.add(api_key)
    with answer_if_deleted_meanwhile(token_revoked()):  # the user, since their token was read
        await session.flush()
    return api_key, key


async def list_api_keys(session: AsyncSession, user_id: str | None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list((await session.execute(query)).scalars())


async def revoke_api_key(session: AsyncSession, key_id: str, owner_id: str | None) -> ApiKey:
    api_key = await session.get(ApiKey, key_id)
    if api_key is None or (owner_id is not None and api_key.user_id != owner_id):
        raise NotFound("API key not found")
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
    await session.flush()
    return api_key


# ---- retention -----------------------------------------------------------------------

# Rows deleted per statement: none holds its locks long, and a backlog goes batch by batch.
PURGE_BATCH = 500


@dataclass(frozen=True)
class Purged:
    logins: int = 0
    api_keys: int = 0


async def purge_ended(db: Database, settings: Settings) -> Purged:
    """Delete the logins and API keys ended more than AUTH_RETENTION_DAYS ago, each batch
    committed. Every serve process runs this: batches skip rows another one holds."""
    if not settings.auth_retention_days:  # 0: kept forever
        return Purged()
    logins = await _purge_batches(db, _ended_logins(settings), AuthSession)
    api_keys = await _purge_batches(db, _ended_api_keys(settings), ApiKey)
    return Purged(logins, api_keys)


def _ended_logins(settings: Settings) -> ColumnElement[bool]:
    """Logins logged out or revoked before the window, and logins none of whose tokens
    could be presented any more since then. A deleted login's tokens are refused as a
    revoked one's, so deleting an ended login lets nothing in; what must not go early is a
    live one, whose user would be signed out."""
    window = timedelta(days=settings.auth_retention_days)
    now = utcnow()
    # A live login's last token may outlive `expires_at` (its newest refresh token's
    # expiry): a refresh token issued again within the reuse window of its rotation, and
    # an access token lasting longer than refresh tokens do.
    unusable_since = (
        now
        - window
        - timedelta(
            seconds=settings.jwt_refresh_reuse_seconds
            + max(0, settings.jwt_expires_in - settings.jwt_refresh_expires_in)
        )
    )
    return or_(
        AuthSession.revoked_at < now - window,
        and_(
            AuthSession.expires_at < unusable_since,
            # Rows rotated before rotations moved `expires_at` on: the newest refresh
            # token was issued at `refreshed_at`.
            or_(
                AuthSession.refreshed_at.is_(None),
                AuthSession.refreshed_at
                < unusable_since - timedelta(seconds=settings.jwt_refresh_expires_in),
            ),
        ),
    )


def _ended_api_keys(settings: Settings) -> ColumnElement[bool]:
    """Keys revoked or expired before the window. A token exchanged for a deleted key is
    refused as one of a revoked key (its row is looked up on every request)."""
    before = utcnow() - timedelta(days=settings.auth_retention_days)
    return or_(ApiKey.revoked_at < before, ApiKey.expires_at < before)


async def _purge_batches(
    db: Database, ended: ColumnElement[bool], model: type[AuthSession] | type[ApiKey]
) -> int:
    total = 0
    while True:
        async with db.session() as session:
            # SKIP LOCKED (PostgreSQL; SQLite has one writer anyway): processes sweeping at
            # once take different rows instead of waiting on, or deadlocking over, the same.
            batch = (
                select(model.id).where(ended).limit(PURGE_BATCH).with_for_update(skip_locked=True)
            )
            result = await session.execute(
                delete(model)
                .where(model.id.in_(batch))
                .execution_options(synchronize_session=False)
            )
        removed = int(result.rowcount or 0)  # type: ignore[attr-defined]
        total += removed
        if removed < PURGE_BATCH:
            return total
