"""Tiered rate limits with the `limits` library (memory, or Redis across processes).

Every `/api` response carries X-RateLimit-Limit/Remaining/Reset (seed 001, reset in epoch
seconds) and RateLimit-Limit/Remaining/Reset/Policy (seed 000's `standardHeaders`, the
IETF draft: reset in seconds from now); a refused request gets 429 with Retry-After in
the body family of its path. The health probes are never counted (seed 000 skips them) but
show the caller's general budget as it stands (seed 001: "every response includes" the
headers), read within a fraction of a second or left out, so a probe never waits on a
slow store. The `auth` tier counts failed attempts only (a 401 or 403),
per client IP and per kind of attempt (a rule's `bucket`: logins, refreshes), so sign-in
brute force is stopped while a frontend that signs in routinely is never locked out. A
sign-in is also counted apart while it is checked, so that attempts sent at once cannot
outnumber the failures left; those beyond them are asked to retry in a second, not locked out.
Other tiers count every request per user (a valid access token, or an API key or a token
exchanged for one, counted as its owner's: keys are free to create), or per IP.
If the limit store is unreachable the request is let through and a warning logged:
an outage of Redis must not take the whole API down.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import anyio
import structlog
from fastapi.responses import JSONResponse
from limits import RateLimitItem, WindowStats, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpsapi.config import Settings
from vpsapi.core.context import client_ip_var
from vpsapi.core.errors import error_body
from vpsapi.core.logging import SECURITY_LOGGER
from vpsapi.core.security import (
    API_KEY_PREFIX,
    API_KEY_SUBJECT_PREFIX,
    CLIENT_SUBJECT_PREFIX,
    TokenCodec,
    hash_api_key,
)

log = structlog.get_logger("vpsapi.ratelimit")
security_log = structlog.get_logger(SECURITY_LOGGER)

AUTH_TIER = "auth"
# The longest a health probe waits for the store to show the caller's budget.
PROBE_PEEK_SECONDS = 0.25
# Windows whose end this process remembers (one per client and tier seen in a window).
WINDOW_ENDS_KEPT = 10_000
# How long a count of sign-ins being checked lives after the arrival that found none (the
# store sets it when a count starts from zero): far beyond any check, and the longest a
# place left held (a process killed mid-check, a store gone at the give-back) is missed.
IN_FLIGHT_SECONDS = 120
# A client refused for the sign-ins it has in flight may send again as soon as they end.
IN_FLIGHT_RETRY_AFTER = 1


@dataclass(frozen=True)
class TierRule:
    """Requests whose path starts with `prefix` use `tier` (longest prefix wins), counted
    in `bucket` (default: one per tier) so that kinds of request can share a tier's limit
    without sharing its count."""

    prefix: str
    tier: str
    bucket: str = ""
    # An auth-tier bucket whose attempts are also held while checked (signing in: a burst
    # of guessed passwords would all be checked before the first failure counts). Not a
    # refresh: a signed token cannot be guessed, and a user's tabs refresh at once.
    held_while_checked: bool = False

    @property
    def counter(self) -> str:
        return self.bucket or self.tier


_DEFAULT_RULE = TierRule("/api", "default")


def tier_limits(settings: Settings) -> dict[str, RateLimitItem]:
    return {
        "default": parse(settings.rate_limit_default),
        AUTH_TIER: parse(settings.rate_limit_auth),
        "search": parse(settings.rate_limit_search),
        "ai": parse(settings.rate_limit_ai),
        "swarm": parse(settings.rate_limit_swarm),
        "citypulse": parse(settings.rate_limit_citypulse),
        "devices": parse(settings.rate_limit_devices),
    }


def create_storage(settings: Settings) -> Storage:
    if settings.redis_url:
        return RedisStorage(
            "async+" + settings.redis_url,
            implementation="redispy",
            key_prefix=f"{settings.redis_prefix}:rl",
            socket_timeout=2,
            socket_connect_timeout=2,
        )
    return MemoryStorage()


# The answers of the auth tier's paths that are failed sign-ins (or refreshes).
_REFUSED_CREDENTIALS = frozenset({401, 403})


class KeyOwners:
    """Which user holds which API key, as authentication found it in this process: the
    limiter counts a key (and a token exchanged for one) as its owner, so keys, free to
    create, share the user's budget (seed 001: "per user") without a query of the limiter's
    own. A key not yet seen here, or refused, counts against its address. References are
    `key:<digest>` for a key and the subject `apikey:<id>` for a token of one."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._owners: OrderedDict[str, str] = OrderedDict()

    @staticmethod
    def of_key(key: str) -> str:
        return f"key:{hash_api_key(key)}"

    def owner(self, reference: str) -> str | None:
        owner = self._owners.get(reference)
        if owner is not None:
            self._owners.move_to_end(reference)
        return owner

    def learn(self, reference: str, owner: str) -> None:
        self._owners[reference] = owner
        self._owners.move_to_end(reference)
        if len(self._owners) > self.size:
            self._owners.popitem(last=False)

    def forget(self, reference: str) -> None:
        self._owners.pop(reference, None)


class RateLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        codec: TokenCodec,
        storage: Storage,
        rules: list[TierRule],
        key_owners: KeyOwners,
    ) -> None:
        self.app = app
        self.key_owners = key_owners
        self.codec = codec
        self.limits = tier_limits(settings)
        self.storage = storage
        self.rules = sorted(rules, key=lambda r: len(r.prefix), reverse=True)
        self.window_ends: dict[str, float] = {}

    def rule_for(self, path: str) -> TierRule:
        for rule in self.rules:
            if path == rule.prefix or path.startswith(rule.prefix.rstrip("/") + "/"):
                return rule
        return _DEFAULT_RULE

    def identity(self, scope: Scope, tier: str) -> str:
        ip = client_ip_var.get() or (scope.get("client") or ("unknown", 0))[0]
        if tier == AUTH_TIER:
            return f"ip:{ip}"
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                credential = credential.strip()
                key_reference = None
                if scheme.lower() in ("bearer", "apikey") and credential.startswith(API_KEY_PREFIX):
                    key_reference = KeyOwners.of_key(credential)
                elif scheme.lower() == "bearer" and credential.count(".") == 2:
                    subject = self.codec.peek_subject(credential)
                    if subject and subject.startswith(API_KEY_SUBJECT_PREFIX):
                        key_reference = subject
                    elif subject and not subject.startswith(CLIENT_SUBJECT_PREFIX):
                        # A shared client's token (seed 000's frontend, one per browser)
                        # falls through to its address, as that seed's limiter counts: one
                        # budget for every visitor would be spent by a handful of them.
                        return f"sub:{subject}"
                if key_reference is not None and (owner := self.key_owners.owner(key_reference)):
                    return f"sub:{owner}"
                break
        return f"ip:{ip}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if not path.startswith("/api"):
            if path == "/health" or path.startswith("/health/"):
                await self.app(scope, receive, await self._with_budget_shown(scope, send))
            else:
                await self.app(scope, receive, send)
            return
        rule = self.rule_for(path)
        item = self.limits[rule.tier]
        key = self.identity(scope, rule.tier)
        if rule.tier == AUTH_TIER:
            await self._attempt(scope, receive, send, rule, item, key)
            return
        try:
            allowed, stats = await self.count(item, rule.counter, key)
        except Exception as exc:
            log.warning("ratelimit_store_unavailable", error=str(exc))
            await self.app(scope, receive, send)
            return
        if not allowed:
            await self._exceeded(scope, receive, send, item, stats, rule.tier, key)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *_headers(item, stats.remaining, stats.reset_time),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _attempt(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rule: TierRule,
        item: RateLimitItem,
        key: str,
    ) -> None:
        """A sign-in or refresh. Only a failed one counts (a 401 or 403), in the tier's
        window: once the failures reach the limit the address is locked out. A sign-in
        (`held_while_checked`) is also counted in flight from its arrival to its answer: the
        failures and the sign-ins in flight together may not pass the limit, or every
        guess sent at once would be checked before the first failure counted. One beyond
        is refused for a second, and not logged as a rate-limit hit (fail2ban bans on
        those): honest sign-ins behind one address (an office's NAT, a frontend) arrive at
        once too, and lock nothing out."""
        counter = rule.counter
        in_flight_key = item.key_for(counter, key, "in-flight")
        held = False

        async def give_back() -> None:
            """Take this sign-in off the ones in flight, once: marked before the store is
            asked, so that a cancellation meanwhile cannot give it back twice, and shielded,
            so that it cannot leave its place held either."""
            nonlocal held
            if held:
                held = False
                with anyio.CancelScope(shield=True):
                    await self._leave(in_flight_key)

        in_flight = 0
        try:
            if rule.held_while_checked:
                in_flight = await self.storage.incr(in_flight_key, IN_FLIGHT_SECONDS)
                held = True
            # Read after this attempt is held, and a failure is counted before its place is
            # given back: no attempt being checked is missed by both counts.
            stats = await self.peek(item, counter, key)
        except Exception as exc:
            log.warning("ratelimit_store_unavailable", error=str(exc))
            await give_back()
            await self.app(scope, receive, send)
            return
        if stats.remaining == 0:
            await give_back()
            await self._exceeded(scope, receive, send, item, stats, rule.tier, key)
            return
        if in_flight > stats.remaining:
            await give_back()
            log.info(
                "sign_ins_in_flight_refused",
                ip=client_ip_var.get() or key.removeprefix("ip:"),
                path=scope.get("path", ""),
                in_flight=in_flight,
                failures_left=stats.remaining,
            )
            await self._too_many(scope, receive, send, item, stats, IN_FLIGHT_RETRY_AFTER)
            return

        async def send_with_headers(message: Message) -> None:
            nonlocal stats
            if message["type"] == "http.response.start":
                if message["status"] in _REFUSED_CREDENTIALS:
                    # A failed attempt counts, and the answer already says so. Not any 4xx:
                    # a browser's GET of the login URL (405) or a malformed body cannot
                    # guess a password, and must not lock its address out.
                    try:
                        with anyio.CancelScope(shield=True):  # counted, the client gone or not
                            _, stats = await self.count(item, counter, key)
                    except Exception as exc:
                        log.warning("ratelimit_store_unavailable", error=str(exc))
                await give_back()
                message["headers"] = [
                    *message.get("headers", []),
                    *_headers(item, stats.remaining, stats.reset_time),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            await give_back()  # no answer of its own (an error, the client gone): nothing guessed

    async def _exceeded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        item: RateLimitItem,
        stats: WindowStats,
        tier: str,
        key: str,
    ) -> None:
        """The limit reached: a 429 until the window ends, logged for fail2ban."""
        security_log.warning(
            "rate_limit_exceeded",
            ip=client_ip_var.get() or key.removeprefix("ip:"),
            subject=key.removeprefix("sub:") if key.startswith("sub:") else None,
            method=scope.get("method"),
            path=scope.get("path", ""),
            tier=tier,
        )
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        await self._too_many(scope, receive, send, item, stats, retry_after)

    async def _too_many(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        item: RateLimitItem,
        stats: WindowStats,
        retry_after: int,
    ) -> None:
        """A 429 in the body family of its path, with the budget's headers as `stats` has it."""
        path = scope.get("path", "")
        body = error_body(
            path,
            scope.get("method", "GET"),
            429,
            "TooManyRequests",
            "Too many requests, please try again later",
            legacy_body={"error": "Too many requests", "retryAfter": retry_after},
        )
        response = JSONResponse(body, status_code=429, headers={"Retry-After": str(retry_after)})
        response.raw_headers.extend(_headers(item, stats.remaining, stats.reset_time))
        await response(scope, receive, send)

    async def _with_budget_shown(self, scope: Scope, send: Send) -> Send:
        """`send`, adding the general tier's headers as the window stands, uncounted."""
        item = self.limits[_DEFAULT_RULE.tier]
        stats = None
        with anyio.move_on_after(PROBE_PEEK_SECONDS):
            try:
                stats = await self.peek(
                    item, _DEFAULT_RULE.counter, self.identity(scope, _DEFAULT_RULE.tier)
                )
            except Exception as exc:
                # Probes come every few seconds: an outage is told by the requests it affects.
                log.debug("ratelimit_store_unavailable", error=str(exc))
        if stats is None:
            return send
        shown = _headers(item, stats.remaining, stats.reset_time)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *shown]
            await send(message)

        return send_with_headers

    async def peek(self, item: RateLimitItem, counter: str, key: str) -> WindowStats:
        """The window as it stands, without counting a request."""
        storage_key = item.key_for(counter, key)
        count = await self.storage.get(storage_key)
        window_end = await self._window_end(storage_key, time.time()) if count else 0.0
        return WindowStats(window_end, max(0, item.amount - count))

    async def count(self, item: RateLimitItem, counter: str, key: str) -> tuple[bool, WindowStats]:
        """Count one request: whether it is within the limit, and the window after it.

        One round trip to the store as a rule (the limiter's hit and window stats took
        three): the count comes back from the increment, and a fixed window's end never
        moves, so this process asks for it once per window, or not at all when its own
        request opened the window."""
        storage_key = item.key_for(counter, key)
        expiry = item.get_expiry()
        count = await self.storage.incr(storage_key, expiry)
        now = time.time()
        if count == 1:
            window_end = now + expiry
            self._remember_window_end(storage_key, window_end, now)
        else:
            window_end = await self._window_end(storage_key, now)
        return count <= item.amount, WindowStats(window_end, max(0, item.amount - count))

    async def _leave(self, in_flight_key: str) -> None:
        """Take one sign-in off those in flight. The Redis store has no decrement, so on
        either store one is added negatively. Had the count expired meanwhile
        (IN_FLIGHT_SECONDS), this sign-in was not in the new one and took it below zero:
        put back. A store that does not answer leaves the place held until the count
        expires."""
        try:
            if await self.storage.incr(in_flight_key, IN_FLIGHT_SECONDS, -1) < 0:
                await self.storage.incr(in_flight_key, IN_FLIGHT_SECONDS)
        except Exception as exc:
            log.warning("ratelimit_store_unavailable", error=str(exc))

    async def _window_end(self, storage_key: str, now: float) -> float:
        """When a counted window ends: asked of the store once per window per process."""
        window_end = self.window_ends.get(storage_key, 0.0)
        if window_end <= now:
            window_end = await self.storage.get_expiry(storage_key)
            self._remember_window_end(storage_key, window_end, now)
        return window_end

    def _remember_window_end(self, storage_key: str, window_end: float, now: float) -> None:
        if len(self.window_ends) >= WINDOW_ENDS_KEPT and storage_key not in self.window_ends:
            self.window_ends = {k: end for k, end in self.window_ends.items() if end > now}
            if len(self.window_ends) >= WINDOW_ENDS_KEPT:
                self.window_ends.clear()
        self.window_ends[storage_key] = window_end


def _headers(item: RateLimitItem, remaining: int, reset_time: float) -> list[tuple[bytes, bytes]]:
    now = time.time()
    window = item.get_expiry()
    if reset_time <= now:  # nothing counted yet: a window would start now
        reset_time = now + window
    reset = math.ceil(reset_time)
    left = str(max(0, remaining)).encode()
    limit = str(item.amount).encode()
    return [
        (b"x-ratelimit-limit", limit),
        (b"x-ratelimit-remaining", left),
        (b"x-ratelimit-reset", str(reset).encode()),
        (b"ratelimit-limit", limit),
        (b"ratelimit-remaining", left),
        (b"ratelimit-reset", str(max(0, math.ceil(reset_time - now))).encode()),
        (b"ratelimit-policy", f"{item.amount};w={window}".encode()),
    ]
