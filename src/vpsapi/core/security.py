"""Credentials: password hashing, JWTs, API keys and the authenticated principal."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from vpsapi.core.errors import TokenRejected

API_KEY_PREFIX = "sk_live_"
JWT_ALGORITHM = "HS256"
# Tolerated clock skew between servers for `iat`/`nbf`; `exp` is kept to the second, as a
# client that was told `expiresIn` expects.
JWT_LEEWAY_SECONDS = 5
# Checked by PyJWT: a token without an expiry would never end. Everything else is checked
# after the expiry, so an expired token of any shape answers "Token expired". Seed 000's
# service verified tokens with the secret alone: one signed with it that names no issuer
# (or no `iat`, or no `sub`, as seed 000's own shape) is taken; one naming another
# issuer is not.
_REQUIRED_CLAIMS = ["exp"]
# Verified tokens remembered per process (LRU): a few MiB at most.
VERIFIED_TOKENS_KEPT = 4096

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A real hash to verify against when the user does not exist, so timing does not
    reveal which emails are registered. Made on first use: a hash takes a few hundred ms,
    which every process start (CLI commands included) would pay otherwise."""
    return _hasher.hash(secrets.token_urlsafe(16))


Role = Literal["admin", "manager", "user"]
ROLES: tuple[Role, ...] = ("admin", "manager", "user")
ROLE_RANK = {"user": 0, "manager": 1, "admin": 2}


# Argon2 takes a few hundred ms of CPU by design, and argon2-cffi releases the GIL
# while it runs: in a thread, one login does not stall every other request.


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    return await anyio.to_thread.run_sync(_verify, password, password_hash)


def _verify(password: str, password_hash: str | None) -> bool:
    try:
        return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def generate_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    # API keys are high-entropy random strings, so a fast hash is enough and keeps
    # per-request verification cheap; only this digest is stored.
    return hashlib.sha256(key.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# Subjects of API clients (`client:shared`, seed 000's one key for a whole frontend), not
# of a person.
CLIENT_SUBJECT_PREFIX = "client:"
# Subject of a token exchanged for a user's API key (`POST /api/auth/token` with the key).
API_KEY_SUBJECT_PREFIX = "apikey:"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user (by password login or their API key) or an API client."""

    kind: Literal["user", "api_key", "client"]
    subject: str  # stable owner identity, e.g. "user:<id>", "client:shared"
    role: Role
    user_id: str | None = None
    email: str | None = None
    username: str | None = None
    api_key_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def has_role(self, minimum: Role) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[minimum]


def _check_expiry(claims: dict[str, Any]) -> None:
    if not isinstance(claims.get("exp"), int | float) or claims["exp"] <= time.time():
        raise jwt.ExpiredSignatureError("Signature has expired")


class TokenCodec:
    """Issues and verifies HS256 JWTs with iss, iat, exp and jti."""

    def __init__(self, secret: str, issuer: str, access_ttl: int, refresh_ttl: int) -> None:
        self._secret = secret
        self.issuer = issuer
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def encode(self, claims: dict[str, Any], ttl: int, token_type: str) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            "typ": token_type,
            **claims,
        }
        return jwt.encode(payload, self._secret, algorithm=JWT_ALGORITHM)

    def access_token(self, claims: dict[str, Any]) -> str:
        return self.encode(claims, self.access_ttl, "access")

    def refresh_token(self, claims: dict[str, Any]) -> str:
        return self.encode(claims, self.refresh_ttl, "refresh")

    def _verified_claims(self, token: str) -> dict[str, Any]:
        """Claims of a token whose signature, expiry and issuer (if it names one) check out. A client
        sends the same token on every request, so a verified one is remembered (by its exact
        text) and later only its expiry is checked again."""
        cached = self._verified.get(token)
        if cached is None:
            cached = jwt.decode(
                token,
                self._secret,
                algorithms=[JWT_ALGORITHM],  # pinned: `alg: none` and RS/HS confusion refused
                options={"require": _REQUIRED_CLAIMS},
                leeway=JWT_LEEWAY_SECONDS,
            )
            _check_expiry(cached)
            if cached.get("iss", self.issuer) != self.issuer:
                raise jwt.InvalidIssuerError("Invalid issuer")
            self._verified[token] = cached
            if len(self._verified) > VERIFIED_TOKENS_KEPT:
                self._verified.popitem(last=False)
        else:
            try:
                _check_expiry(cached)
            except jwt.ExpiredSignatureError:
                del self._verified[token]
                raise
            self._verified.move_to_end(token)
        return dict(cached)

    def decode(self, token: str, token_type: str = "access") -> dict[str, Any]:
        try:
            claims = self._verified_claims(token)
        except jwt.ExpiredSignatureError as exc:
            raise TokenRejected("Token expired") from exc
        except jwt.PyJWTError as exc:
            raise TokenRejected("Invalid token") from exc
        if claims.get("typ", "access") != token_type:
            raise TokenRejected("Invalid token")
        return claims

    def peek_subject(self, token: str) -> str | None:
        """Subject of a valid access token, or None; used by the rate limiter."""
        try:
            claims = self._verified_claims(token)
        except jwt.PyJWTError:
            return None
        sub = claims.get("sub")
        return sub if isinstance(sub, str) and claims.get("typ", "access") == "access" else None
