"""Tiered rate limits: headers on every /api answer, 429 with Retry-After per family."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio
import httpx
import pytest
from limits import WindowStats
from limits.aio.storage import MemoryStorage, RedisStorage

from support import ADMIN_EMAIL, ADMIN_PASSWORD, SHARED_API_KEY, login
from vpsapi.auth import service as auth_service
from vpsapi.config import Settings
from vpsapi.core import ratelimit
from vpsapi.core.ratelimit import RateLimitMiddleware


@pytest.fixture
async def limited(make_client) -> httpx.AsyncClient:
    return await make_client(rate_limit_enabled=True, rate_limit_default="3/minute")


async def test_headers_on_every_api_response(limited: httpx.AsyncClient) -> None:
    response = await limited.get("/api/v1/info")
    assert response.headers["x-ratelimit-limit"] == "3"
    assert response.headers["x-ratelimit-remaining"] == "2"
    reset = int(response.headers["x-ratelimit-reset"])
    assert time.time() - 5 < reset <= time.time() + 61
    not_found = await limited.get("/api/v1/nothing")
    assert not_found.headers["x-ratelimit-remaining"] == "1"
    # Seed 000's `standardHeaders`: the IETF draft's names, reset in seconds from now.
    assert not_found.headers["ratelimit-limit"] == "3"
    assert not_found.headers["ratelimit-remaining"] == "1"
    assert 0 <= int(not_found.headers["ratelimit-reset"]) <= 60
    assert not_found.headers["ratelimit-policy"] == "3;w=60"


async def test_a_window_keeps_its_end(limited: httpx.AsyncClient) -> None:
    """A fixed window's reset is the same instant for every request in it, and counts down."""
    answers = [await limited.get("/api/v1/info") for _ in range(3)]
    assert {answer.headers["x-ratelimit-reset"] for answer in answers} == {
        answers[0].headers["x-ratelimit-reset"]
    }
    assert [answer.headers["x-ratelimit-remaining"] for answer in answers] == ["2", "1", "0"]
    refused = await limited.get("/api/v1/info")
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-reset"] == answers[0].headers["x-ratelimit-reset"]


async def test_v1_429_envelope_with_retry_after(limited: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await limited.get("/api/v1/info")).status_code == 200
    response = await limited.get("/api/v1/info")
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-remaining"] == "0"
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "TooManyRequests"
    assert body["message"] == "Too many requests, please try again later"
    assert body["statusCode"] == 429


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/jobs-nothing", None),  # seed 000's body
        ("/api/configs", "Too many requests"),  # seed 002's clients read `detail`
    ],
)
async def test_legacy_429_body(limited: httpx.AsyncClient, path: str, detail: str | None) -> None:
    for _ in range(3):
        await limited.get(path)
    response = await limited.get(path)
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "Too many requests"
    assert body["retryAfter"] == int(response.headers["retry-after"])
    assert body.get("detail") == detail


async def test_health_and_metrics_never_limited(limited: httpx.AsyncClient) -> None:
    for _ in range(6):
        for path in ("/health", "/health/ready", "/health/live", "/metrics"):
            response = await limited.get(path)
            assert response.status_code == 200
            if path == "/metrics":
                assert "x-ratelimit-limit" not in response.headers
            else:  # seed 001: every response shows the budget; a probe does not spend it
                assert response.headers["x-ratelimit-limit"] == "3"
                assert response.headers["x-ratelimit-remaining"] == "3"


async def test_health_shows_the_budget_as_it_stands(limited: httpx.AsyncClient) -> None:
    counted = await limited.get("/api/v1/info")
    probe = await limited.get("/health")
    assert probe.headers["x-ratelimit-remaining"] == "2"
    assert probe.headers["x-ratelimit-reset"] == counted.headers["x-ratelimit-reset"]
    assert probe.headers["ratelimit-policy"] == "3;w=60"
    assert (await limited.get("/api/v1/info")).headers["x-ratelimit-remaining"] == "1"


async def _stalled_peek(*args: object) -> WindowStats:
    await asyncio.sleep(5)  # far beyond PROBE_PEEK_SECONDS: the headers would come late
    return WindowStats(0, 3)


async def _failed_peek(*args: object) -> WindowStats:
    raise ConnectionError("store down")


@pytest.mark.parametrize("peek", [_stalled_peek, _failed_peek], ids=["stalled", "down"])
async def test_a_probe_never_waits_on_the_limit_store(
    limited: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, peek: object
) -> None:
    """The budget on a probe is read within PROBE_PEEK_SECONDS or left out."""
    monkeypatch.setattr(RateLimitMiddleware, "peek", peek)
    probe = await limited.get("/health/live")
    assert probe.status_code == 200
    assert "x-ratelimit-limit" not in probe.headers
    assert (await limited.get("/api/v1/info")).headers["x-ratelimit-remaining"] == "2"


async def test_limits_are_per_user_when_authenticated(make_client) -> None:
    client = await make_client(rate_limit_enabled=True, rate_limit_default="3/minute")
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        assert (await client.get("/api/v1/info")).status_code == 200  # the IP's budget
    assert (await client.get("/api/v1/info")).status_code == 429
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200  # the user's own


async def test_auth_tier_counts_refused_credentials_only(make_client) -> None:
    """A browser's GET of the login URL, a malformed body or an unknown path under it
    guesses no password: they must not lock the address out of signing in."""
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="2/15minutes")
    for _ in range(3):
        for method, path, body in (
            ("GET", "/api/v1/auth/login", None),  # 405
            ("POST", "/api/v1/auth/login", {}),  # 422
            ("POST", "/api/v1/auth/login", {"email": "bad", "password": "short"}),  # 422
            ("GET", "/api/v1/auth/login/nothing", None),  # 404
        ):
            answer = await client.request(method, path, json=body)
            assert answer.status_code in (404, 405, 422), (method, path, answer.status_code)
            assert answer.headers["x-ratelimit-remaining"] == "2"
    signed_in = await client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text


async def test_a_shared_client_token_is_limited_per_address(make_client) -> None:
    """Seed 000's frontend: every visitor holds a token of the one shared key, and its
    limiter counts per address; one budget for all of them would be spent by a few."""
    client = await make_client(rate_limit_enabled=True, rate_limit_default="3/minute")
    exchanged = await client.post(
        "/api/auth/token", headers={"X-API-Key": SHARED_API_KEY, "X-Forwarded-For": "10.0.0.9"}
    )
    token = exchanged.json()["token"]

    async def status(address: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "X-Forwarded-For": address}
        return (await client.get("/api/jobs/job_none", headers=headers)).status_code

    assert [await status("10.0.0.1") for _ in range(4)] == [404, 404, 404, 429]
    assert [await status("10.0.0.2") for _ in range(3)] == [404, 404, 404]


async def test_auth_tier_counts_failed_attempts_per_ip(make_client) -> None:
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="5/15minutes")
    for _ in range(3):  # successes do not count
        ok = await client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-remaining"] == "5"
    first = True
    for left in range(4, -1, -1):
        bad = await client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong-password"}
        )
        assert bad.status_code == 401
        # The failed attempt is already counted in its own answer.
        assert bad.headers["x-ratelimit-remaining"] == str(left)
        reset = int(bad.headers["x-ratelimit-reset"])
        if first:  # the window starts with the first failure, not at its own end
            assert time.time() + 800 < reset <= time.time() + 901
            first = False
    blocked = await client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    # The seed-002 login is the same kind of attempt: it shares the count.
    legacy = await client.post("/api/auth/login", json={"username": "admin", "password": "x"})
    assert legacy.status_code == 429
    # Seed 000's token exchange is not a sign-in: only the default tier applies to it.
    token = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    assert token.status_code == 200
    # Nor do failed sign-ins use up refreshes (and the other way round).
    refresh = await client.post("/api/v1/auth/refresh", json={"refreshToken": "not-a-token"})
    assert refresh.status_code == 401
    assert refresh.headers["x-ratelimit-remaining"] == "4"


_WRONG_SIGN_INS = {
    "/api/v1/auth/login": {"email": ADMIN_EMAIL, "password": "wrong-password"},
    "/api/auth/login": {"username": "admin", "password": "wrong-password"},
}
_RIGHT_SIGN_INS = {
    "/api/v1/auth/login": {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    "/api/auth/login": {"username": "admin", "password": ADMIN_PASSWORD},
}
_RIGHT = _RIGHT_SIGN_INS["/api/v1/auth/login"]
_WRONG = _WRONG_SIGN_INS["/api/v1/auth/login"]


def _security_events(client: httpx.AsyncClient) -> list[str]:
    """The events of the security log, which the fail2ban jail reads."""
    path = client.app.state.settings.effective_log_dir / "security.log"  # type: ignore[attr-defined]
    return [json.loads(line)["event"] for line in path.read_text().splitlines() if line]


async def _sign_in(client: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json=body)


@pytest.mark.parametrize("path", list(_WRONG_SIGN_INS))
async def test_wrong_sign_ins_sent_at_once_get_the_limits_worth_of_checks(
    make_client, path: str
) -> None:
    """A burst of guesses from one address: only the failures left are checked, as sign-ins
    count while they are checked (counted once failed, all sent at once would be checked:
    seen, 40 at once, 39 wrong and one right, all answered). Then the address is locked."""
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="5/15minutes")
    answers = await asyncio.gather(
        *(client.post(path, json=_WRONG_SIGN_INS[path]) for _ in range(12))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [401] * 5 + [429] * 7
    assert sorted(a.headers["x-ratelimit-remaining"] for a in answers if a.status_code == 401) == [
        "0",
        "1",
        "2",
        "3",
        "4",
    ]
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert refused.headers["x-ratelimit-limit"] == "5"
    assert 1 <= int(refused.headers["retry-after"]) <= 900
    # Five failures: locked for the rest of the window, a right password too.
    locked = await client.post(path, json=_RIGHT_SIGN_INS[path])
    assert locked.status_code == 429
    assert 800 < int(locked.headers["retry-after"]) <= 900
    assert "rate_limit_exceeded" in _security_events(client)


@pytest.mark.parametrize("path", list(_RIGHT_SIGN_INS))
async def test_right_sign_ins_sent_at_once_are_never_locked_out(make_client, path: str) -> None:
    """Honest sign-ins from one address (an office behind NAT, a frontend's few egress
    addresses) arrive at once too. Those beyond the failures left are asked to retry in a
    second, and nothing fail2ban bans on is logged: no lockout, then or after."""
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="5/15minutes")
    answers = await asyncio.gather(
        *(client.post(path, json=_RIGHT_SIGN_INS[path]) for _ in range(12))
    )
    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [429] * 7
    for refused in (answer for answer in answers if answer.status_code == 429):
        assert refused.headers["retry-after"] == "1"
        body = refused.json()  # as any 429 on its path
        if path == "/api/auth/login":
            assert (body["error"], body["retryAfter"]) == ("Too many requests", 1)
        else:
            assert (body["error"], body["statusCode"]) == ("TooManyRequests", 429)
        assert refused.headers["x-ratelimit-remaining"] == "5"  # no failure counted
    assert "rate_limit_exceeded" not in _security_events(client)
    again = await client.post(path, json=_RIGHT_SIGN_INS[path])
    assert (again.status_code, again.headers["x-ratelimit-remaining"]) == (200, "5")


async def test_refreshes_sent_at_once_are_answered_then_locked(make_client) -> None:
    """A refresh token is signed: it cannot be guessed, and a user's tabs refresh at once,
    so refreshes are not held while checked. Their failures count as ever: a burst of
    bogus ones is answered, and locks the address's refreshes."""
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="5/15minutes")
    bogus = {"refreshToken": "not-a-token"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/auth/refresh", json=bogus) for _ in range(12))
    )
    assert [answer.status_code for answer in answers] == [401] * 12
    assert sorted(answer.headers["x-ratelimit-remaining"] for answer in answers) == [
        *["0"] * 8,
        *["1", "2", "3", "4"],
    ]
    locked = await client.post("/api/v1/auth/refresh", json=bogus)
    assert locked.status_code == 429
    assert 800 < int(locked.headers["retry-after"]) <= 900
    # Sign-ins are counted apart.
    assert (await _sign_in(client, _RIGHT)).status_code == 200


async def test_sign_ins_in_a_burst_give_their_attempt_back(make_client) -> None:
    """A successful sign-in holds a place in the budget only while it is checked: once it
    succeeds the place is free again, in the same burst or after it."""
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="5/15minutes")
    answers = await asyncio.gather(
        *(_sign_in(client, body) for body in [_RIGHT, _WRONG] * 2 + [_RIGHT])
    )
    assert [answer.status_code for answer in answers] == [200, 401, 200, 401, 200]
    after = [(await _sign_in(client, _WRONG)) for _ in range(4)]
    assert [(a.status_code, a.headers["x-ratelimit-remaining"]) for a in after] == [
        (401, "2"),
        (401, "1"),
        (401, "0"),
        (429, "0"),
    ]


async def test_an_attempt_that_breaks_does_not_count(
    make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attempt is held while it is checked; one that ends in an error, not a refusal of
    its credentials, guessed nothing and gives its place back."""
    # JSON logs: the console's rendering of the error's traceback takes seconds.
    client = await make_client(
        rate_limit_enabled=True, rate_limit_auth="1/15minutes", log_format="json"
    )

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database gone")

    with monkeypatch.context() as patch:
        patch.setattr(auth_service, "login", broken)
        broke = await _sign_in(client, _WRONG)
        assert broke.status_code == 500
    bad = await _sign_in(client, _WRONG)
    assert (bad.status_code, bad.headers["x-ratelimit-remaining"]) == (401, "0")


def _held_until(release: asyncio.Event, checking: asyncio.Event, password: str) -> Any:
    """auth_service.login, holding a sign-in with `password` until `release`."""
    checked = auth_service.login

    async def login(*args: Any, **kwargs: Any) -> Any:
        if kwargs["password"] == password:
            checking.set()
            await release.wait()
        return await checked(*args, **kwargs)

    return login


async def test_a_sign_in_cancelled_while_giving_its_place_back_gives_it_back_once(
    make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation (the client gone) that reaches a sign-in while the store takes it
    off those in flight must not take it off again: another sign-in's place would go, and
    one more guess than the limit would be checked."""
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="2/15minutes")
    release, checking = asyncio.Event(), asyncio.Event()
    slow_guess = {"email": ADMIN_EMAIL, "password": "slow-wrong-password"}
    monkeypatch.setattr(
        auth_service, "login", _held_until(release, checking, slow_guess["password"])
    )
    cancelled = anyio.CancelScope()
    armed = True

    def cancelling(original: Any) -> Any:
        async def incr(self: Any, key: str, expiry: int, amount: int = 1) -> int:
            nonlocal armed
            count: int = await original(self, key, expiry, amount)
            if amount < 0 and armed:  # the first place given back: the right sign-in's
                armed = False
                cancelled.cancel()  # arrives while the store answers
                await anyio.sleep(0)
            return count

        return incr

    guessing = asyncio.create_task(client.post("/api/v1/auth/login", json=slow_guess))
    await checking.wait()
    with monkeypatch.context() as patch:
        for storage in (MemoryStorage, RedisStorage):
            patch.setattr(storage, "incr", cancelling(storage.incr))
        with cancelled:
            await _sign_in(client, _RIGHT)
    assert not armed
    # One place is the slow guess's, the other the next guess's: no third.
    first = await _sign_in(client, _WRONG)
    second = await _sign_in(client, _WRONG)
    assert (first.status_code, second.status_code) == (401, 429)
    assert second.headers["retry-after"] == "1"
    release.set()
    assert (await guessing).status_code == 401
    assert (await _sign_in(client, _RIGHT)).status_code == 429  # two failures: locked


async def test_sign_ins_in_flight_when_their_count_expired_leave_it_at_zero(
    make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count of sign-ins in flight expires (so that a place left held is not held for
    good): one that outlasted it takes itself off a count it is not in, below zero, and
    is put back, or a burst would get a guess more than the limit checked."""
    monkeypatch.setattr(ratelimit, "IN_FLIGHT_SECONDS", 1)
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="2/15minutes")
    release, checking = asyncio.Event(), asyncio.Event()
    monkeypatch.setattr(auth_service, "login", _held_until(release, checking, ADMIN_PASSWORD))
    signing_in = asyncio.create_task(_sign_in(client, _RIGHT))
    await checking.wait()
    await asyncio.sleep(1.2)
    release.set()
    assert (await signing_in).status_code == 200
    answers = await asyncio.gather(*(_sign_in(client, _WRONG) for _ in range(3)))
    assert sorted(answer.status_code for answer in answers) == [401, 401, 429]


async def test_a_place_the_store_did_not_take_back_is_freed_by_its_expiry(
    make_client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A place left held (the store gone at the give-back, a process killed mid-check)
    refuses sign-ins for a second at a time, until the count expires."""
    monkeypatch.setattr(ratelimit, "IN_FLIGHT_SECONDS", 2)  # time enough for three sign-ins
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="2/15minutes")

    def failing(original: Any) -> Any:
        async def incr(self: Any, key: str, expiry: int, amount: int = 1) -> int:
            if amount < 0:
                raise ConnectionError("store gone")
            count: int = await original(self, key, expiry, amount)
            return count

        return incr

    started = time.monotonic()
    with monkeypatch.context() as patch:
        for storage in (MemoryStorage, RedisStorage):
            patch.setattr(storage, "incr", failing(storage.incr))
        assert [(await _sign_in(client, _RIGHT)).status_code for _ in range(2)] == [200, 200]
    refused = await _sign_in(client, _RIGHT)
    assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
    await asyncio.sleep(started + 2.2 - time.monotonic())
    assert (await _sign_in(client, _RIGHT)).status_code == 200


async def test_api_keys_count_as_their_owner(make_client) -> None:
    """Seed 001 limits per user: once a key has signed in, it, the tokens exchanged for it
    and the user's own token share one budget (keys are free to create: one budget each
    would make every tier unlimited). A key not yet seen, or refused, counts against its
    address."""
    client = await make_client(rate_limit_enabled=True, rate_limit_default="8/minute")
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    admin = {"Authorization": f"Bearer {token}"}
    created = [
        (await client.post("/api/v1/api-keys", json={"name": name}, headers=admin)).json()["data"]
        for name in ("one", "two")
    ]  # the user's: 6 left
    exchanged = await client.post("/api/auth/token", headers={"X-API-Key": created[0]["key"]})
    assert exchanged.headers["x-ratelimit-remaining"] == "7"  # the address's
    key_one = {"Authorization": f"ApiKey {created[0]['key']}"}
    key_two = {"Authorization": f"Bearer {created[1]['key']}"}
    key_token = {"Authorization": f"Bearer {exchanged.json()['token']}"}

    async def remaining(headers: dict[str, str], status: int = 200) -> str:
        response = await client.get("/api/v1/me", headers=headers)
        assert response.status_code == status, response.text
        return str(response.headers["x-ratelimit-remaining"])

    # First seen: the address's budget, until authentication names the owner.
    assert [await remaining(h) for h in (key_one, key_two, key_token)] == ["6", "5", "4"]
    # Then the user's, whichever credential.
    assert [await remaining(h) for h in (key_one, key_two, key_token, admin)] == [
        "5",
        "4",
        "3",
        "2",
    ]
    revoke = await client.delete(f"/api/v1/api-keys/{created[1]['id']}", headers=admin)
    assert revoke.status_code == 200, revoke.text  # 1 left
    # A revoked key is refused once on its owner's budget, then on its address's.
    assert await remaining(key_two, 401) == "0"
    assert await remaining(key_two, 401) == "3"
    assert (await client.get("/api/v1/me", headers=admin)).status_code == 429
    unknown = await client.get("/api/v1/me", headers={"Authorization": "ApiKey sk_live_nope"})
    assert (unknown.status_code, unknown.headers["x-ratelimit-remaining"]) == (401, "2")


async def test_search_tier(make_client) -> None:
    client = await make_client(rate_limit_enabled=True, rate_limit_search="2/minute")
    token = (await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    statuses = [
        (await client.get("/api/v1/search?q=a", headers=headers)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


@pytest.mark.parametrize(
    ("window_ms", "max_requests", "expected"),
    [
        (60000, 20, "20/60seconds"),
        (None, 20, "20/900seconds"),  # seed 000: `|| 15 * 60 * 1000`
        (60000, None, "100/60seconds"),  # seed 000: `|| 100`
    ],
)
def test_seed000_window_settings(settings_factory, window_ms, max_requests, expected) -> None:
    settings = settings_factory(
        rate_limit_window_ms=window_ms, rate_limit_max_requests=max_requests
    )
    assert settings.rate_limit_default == expected


@pytest.mark.parametrize("count_variable", ["RATE_LIMIT_MAX_REQUESTS", "RATE_LIMIT_MAX"])
def test_the_seeds_window_variables_set_the_default_tier(
    monkeypatch: pytest.MonkeyPatch, tmp_path, count_variable: str
) -> None:
    """Seed 000 names the count RATE_LIMIT_MAX_REQUESTS, seed 001 RATE_LIMIT_MAX."""
    monkeypatch.setenv("RATE_LIMIT_WINDOW_MS", "60000")
    monkeypatch.setenv(count_variable, "3")
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert settings.rate_limit_default == "3/60seconds"
