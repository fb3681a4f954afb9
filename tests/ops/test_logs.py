"""/api/logs: the stream files written by the service, read back through the API."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD, free_port, login
from vpsapi.app import create_app
from vpsapi.config import SettingsError
from vpsapi.ops.audit.models import AuditEntry

STREAM_ENDPOINTS = ["application", "structured", "performance", "security", "audit"]
READ_ENDPOINTS = [*STREAM_ENDPOINTS, "nginx", "system", "retention-policy"]


def log_dir(client: httpx.AsyncClient) -> Path:
    path: Path = client.app.state.settings.effective_log_dir  # type: ignore[attr-defined]
    return path


async def get_logs(
    client: httpx.AsyncClient, headers: dict[str, str], endpoint: str, **params: Any
) -> dict[str, Any]:
    response = await client.get(f"/api/logs/{endpoint}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_request_shows_in_the_performance_log(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    request_id = f"perf-{uuid.uuid4().hex}"
    response = await client.get("/api/v1/me", headers={**admin_headers, "X-Request-ID": request_id})
    assert response.status_code == 200
    me = response.json()["data"]

    page = await get_logs(client, admin_headers, "performance", q=request_id)
    assert len(page["entries"]) == 1
    entry = page["entries"][0]
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/v1/me"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0
    assert entry["user_id"] == me["user"]["id"]
    assert entry["request_id"] == request_id
    assert entry["level"] == "info"
    assert page["source"] == "performance"
    assert page["next_cursor"] is None
    # The file itself holds one JSON object per line.
    lines = (log_dir(client) / "performance.log").read_text().splitlines()
    assert any(json.loads(line).get("request_id") == request_id for line in lines)


async def test_auth_failures_and_denials_show_in_the_security_log(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user: Any
) -> None:
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": "not-the-password-1"}
    )
    assert response.status_code == 401
    response = await client.get(
        "/api/logs/application", headers={"Authorization": "Bearer not.a.token"}
    )
    assert response.status_code == 401
    user, user_headers = await create_user()
    response = await client.get("/api/logs/application", headers=user_headers)
    assert response.status_code == 403

    page = await get_logs(client, admin_headers, "security")
    events = [entry["event"] for entry in page["entries"]]
    assert "login_failed" in events
    assert "token_rejected" in events
    denied = [e for e in page["entries"] if e["event"] == "permission_denied"]
    assert denied and denied[0]["user_id"] == user["id"]
    assert denied[0]["path"] == "/api/logs/application"
    # Filtered by user: only that user's denial.
    mine = await get_logs(client, admin_headers, "security", user=user["id"])
    assert [e["event"] for e in mine["entries"]] == ["permission_denied", "login_succeeded"]


async def test_rate_limit_hits_show_in_the_security_log(make_client: Any) -> None:
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="2/minute")
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    statuses = [
        (
            await client.post(
                "/api/auth/login", json={"username": "admin", "password": "wrong-password-1"}
            )
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [401, 401, 429]
    page = await get_logs(client, headers, "security", q="rate_limit_exceeded")
    assert len(page["entries"]) == 1
    assert page["entries"][0]["tier"] == "auth"
    assert page["entries"][0]["path"] == "/api/auth/login"


async def test_policy_change_is_audited_in_the_table_and_the_audit_stream(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    before = await get_logs(client, admin_headers, "retention-policy")
    assert before["retention_days"] == 30 and before["updated_at"] is None
    request_id = f"audit-{uuid.uuid4().hex}"
    response = await client.put(
        "/api/logs/retention-policy",
        json={"retention_days": 7, "audit_retention_days": 90, "max_size_mb": 100},
        headers={**admin_headers, "X-Request-ID": request_id},
    )
    assert response.status_code == 200, response.text
    assert response.json()["retention_days"] == 7
    assert response.json()["updated_by"] == "admin"
    after = await get_logs(client, admin_headers, "retention-policy")
    assert after["retention_days"] == 7 and after["max_size_mb"] == 100

    audit = await get_logs(client, admin_headers, "audit", action="logs.retention_policy.update")
    assert audit["total"] == 1
    entry = audit["entries"][0]
    assert entry["actor"] == "admin"
    assert entry["target"] == "retention-policy"
    assert entry["before"]["retention_days"] == 30
    assert entry["after"]["retention_days"] == 7
    assert entry["request_id"] == request_id
    assert entry["ip"] == "127.0.0.1"
    # The same change, echoed to audit.log.
    stream = await get_logs(client, admin_headers, "structured", source="audit", q=request_id)
    assert [e["action"] for e in stream["entries"]] == ["logs.retention_policy.update"]


async def test_filters_limit_and_cursor_paging(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    marker = uuid.uuid4().hex
    started = datetime.now(UTC)
    for index in range(5):
        response = await client.get(
            "/api/v1/me", headers={**admin_headers, "X-Request-ID": f"{marker}-{index}"}
        )
        assert response.status_code == 200

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": marker, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await get_logs(client, admin_headers, "performance", **params)
        seen += [entry["request_id"] for entry in page["entries"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # Newest first, each entry once.
    assert seen == [f"{marker}-{index}" for index in reversed(range(5))]

    # Text with quotes is matched on the parsed line, in the compact form the files hold.
    quoted = await get_logs(client, admin_headers, "performance", q=f'"request_id":"{marker}-3"')
    assert [entry["request_id"] for entry in quoted["entries"]] == [f"{marker}-3"]

    recent = await get_logs(
        client, admin_headers, "performance", q=marker, **{"from": started.isoformat()}
    )
    assert len(recent["entries"]) == 5
    for edge in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"):
        for endpoint in ("performance", "audit"):
            await get_logs(
                client, admin_headers, endpoint, **{"from": edge, "to": "9999-12-31T23:59:59Z"}
            )
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert (await get_logs(client, admin_headers, "performance", **{"from": future}))[
        "entries"
    ] == []
    past = (started - timedelta(hours=1)).replace(tzinfo=None).isoformat()  # naive: UTC
    assert (await get_logs(client, admin_headers, "performance", q=marker, to=past))[
        "entries"
    ] == []
    # Access lines are INFO: nothing at warning and above carries the marker.
    assert (await get_logs(client, admin_headers, "performance", q=marker, level="warning"))[
        "entries"
    ] == []
    assert (
        len(
            (await get_logs(client, admin_headers, "performance", q=marker, level="info"))[
                "entries"
            ]
        )
        == 5
    )

    # The audit table pages the same way.
    for days in (10, 11, 12):
        response = await client.put(
            "/api/logs/retention-policy", json={"retention_days": days}, headers=admin_headers
        )
        assert response.status_code == 200
    first = await get_logs(client, admin_headers, "audit", limit=2, user="admin")
    assert first["total"] == 3
    assert [e["after"]["retention_days"] for e in first["entries"]] == [12, 11]
    second = await get_logs(
        client, admin_headers, "audit", limit=2, user="admin", cursor=first["next_cursor"]
    )
    assert [e["after"]["retention_days"] for e in second["entries"]] == [10]
    assert second["next_cursor"] is None
    assert (await get_logs(client, admin_headers, "audit", user="somebody-else"))["total"] == 0
    assert (await get_logs(client, admin_headers, "audit", q="RETENTION"))["total"] == 3


@pytest.mark.parametrize(
    ("endpoint", "params"),
    [
        ("application", {"level": "verbose"}),
        ("application", {"limit": 0}),
        ("application", {"limit": 1001}),
        ("application", {"from": "yesterday"}),
        ("application", {"cursor": "%%%not-a-cursor"}),
        ("application", {"cursor": "eyJubyI6MX0"}),  # valid base64 JSON, wrong fields
        ("performance", {"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}),
        ("performance", {"from": "0001-01-01T00:00:00+05:00"}),
        ("audit", {"to": "9999-12-31T23:59:59-05:00"}),
        ("security", {"q": ""}),
        ("security", {"q": "a\x00b"}),
        ("audit", {"user": "\x00"}),
        ("audit", {"action": "x\x00"}),
        ("nginx", {"grep": "\x00"}),
        ("structured", {"source": "passwords"}),
        ("audit", {"cursor": "bm9wZQ"}),
        # A cursor's time out of range once in UTC (0001-01-01T00:00+14:00, 9999-12-31
        # T23:59:59-14:00): was a 500 binding it.
        ("audit", {"cursor": "eyJ0IjogIjAwMDEtMDEtMDFUMDA6MDA6MDArMTQ6MDAiLCAiaWQiOiAieCJ9"}),
        ("audit", {"cursor": "eyJ0IjogIjk5OTktMTItMzFUMjM6NTk6NTktMTQ6MDAiLCAiaWQiOiAieCJ9"}),
        ("audit", {"limit": "many"}),
        ("nginx", {"log": "secrets"}),
        ("nginx", {"lines": 0}),
        ("nginx", {"lines": 5001}),
        ("system", {"lines": -1}),
    ],
)
async def test_bad_parameters_are_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], endpoint: str, params: dict[str, Any]
) -> None:
    response = await client.get(f"/api/logs/{endpoint}", params=params, headers=admin_headers)
    assert response.status_code == 422, response.text
    # FastAPI's shape, whichever check refused it: each error says where it was.
    for error in response.json()["detail"]:
        assert set(error) == {"type", "loc", "msg"}, error
        assert error["loc"][0] == "query" or error["loc"] == ["url"], error  # a NUL in it


@pytest.mark.parametrize(
    "body",
    [
        {"retention_days": 0},
        {"retention_days": 3651},
        {"retention_days": "soon"},
        {"retention_days": 7, "max_size_mb": 0},
        {"retention_days": 7, "delete_everything": True},
        {},
        {"updated_at": None, "updated_by": "me"},  # only read-only fields: nothing to change
        {"retention_days": None},
        {"auto_cleanup": None},
        {"auto_cleanup": "sometimes"},
        # JSON's true is no number, text no boolean (lax mode read them as 1 and true).
        {"retention_days": True},
        {"audit_retention_days": True},
        {"max_size_mb": True},
        {"auto_cleanup": "yes"},
    ],
)
async def test_bad_retention_policy_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.put("/api/logs/retention-policy", json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert (await get_logs(client, admin_headers, "retention-policy"))["updated_at"] is None


async def test_only_admins_read_or_change_logs(client: httpx.AsyncClient, create_user: Any) -> None:
    _, manager_headers = await create_user("manager")
    for endpoint in READ_ENDPOINTS:
        response = await client.get(f"/api/logs/{endpoint}", headers=manager_headers)
        assert response.status_code == 403, endpoint
        assert (await client.get(f"/api/logs/{endpoint}")).status_code == 401, endpoint
    response = await client.put(
        "/api/logs/retention-policy", json={"retention_days": 1}, headers=manager_headers
    )
    assert response.status_code == 403
    response = await client.post("/api/logs/cleanup", headers=manager_headers)
    assert response.status_code == 403


def _age(path: Path, days: float) -> None:
    moment = time.time() - days * 86400
    os.utime(path, (moment, moment))


async def test_cleanup_removes_what_the_policy_says(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    logs = log_dir(client)
    old_app = logs / "application.log.3"
    old_security = logs / "security.log.2"
    fresh_app = logs / "application.log.1"
    big_perf = [logs / "performance.log.1", logs / "performance.log.2"]
    for path in (old_app, old_security, fresh_app):
        path.write_text('{"event": "old"}\n')
    for path in big_perf:
        path.write_bytes(b"x" * (700 * 1024))
    _age(old_app, 40)
    _age(old_security, 31)
    _age(big_perf[1], 1)
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        session.add(
            AuditEntry(
                actor="someone",
                action="test.old",
                target="",
                created_at=datetime.now(UTC) - timedelta(days=400),
            )
        )

    response = await client.put(
        "/api/logs/retention-policy",
        json={"retention_days": 30, "audit_retention_days": 365, "max_size_mb": 1},
        headers=admin_headers,
    )
    assert response.status_code == 200
    response = await client.post("/api/logs/cleanup", headers=admin_headers)
    assert response.status_code == 200, response.text
    result = response.json()
    removed = {item["file"]: item["reason"] for item in result["removed_files"]}
    assert removed == {
        "application.log.3": "retention_days",
        "security.log.2": "retention_days",
        "performance.log.2": "max_size_mb",
    }
    assert result["removed_audit_entries"] == 1
    assert result["freed_bytes"] == sum(item["size_bytes"] for item in result["removed_files"])
    assert not old_app.exists() and not old_security.exists() and not big_perf[1].exists()
    assert fresh_app.exists() and big_perf[0].exists()
    assert (logs / "application.log").exists()

    audit = await get_logs(client, admin_headers, "audit", action="logs.cleanup")
    assert audit["entries"][0]["after"]["removed_audit_entries"] == 1
    assert (await get_logs(client, admin_headers, "audit", action="test.old"))["total"] == 0
    # Nothing left to remove the second time.
    again = (await client.post("/api/logs/cleanup", headers=admin_headers)).json()
    assert again["removed_files"] == [] and again["removed_audit_entries"] == 0


async def test_secrets_never_reach_the_log_files(make_client: Any, tmp_path: Path) -> None:
    # DEBUG: every line of every logger goes to application.log too.
    client = await make_client(log_level="DEBUG")
    password = "Sup3r-Secret-Passw0rd-" + uuid.uuid4().hex[:8]
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": password}
    )
    assert response.status_code == 401
    response = await client.post("/api/v1/auth/login", json={"email": "x", "password": password})
    assert response.status_code in (401, 422)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    access, refresh = tokens["accessToken"], tokens["refreshToken"]
    headers = {"Authorization": f"Bearer {access}"}
    assert (await client.get("/api/logs/security", headers=headers)).status_code == 200
    forged = access[:-4] + "AAAA"
    response = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    await client.post("/api/v1/auth/refresh", json={"refreshToken": refresh})
    # Tokens in a query string (SSE) and API keys, good and bad.
    await client.get(f"/api/sse/job-progress/nope?access_token={access}")
    created = await client.post("/api/v1/api-keys", json={"name": "logs"}, headers=headers)
    key = created.json()["data"]["key"]
    assert (await client.get("/api/v1/me", headers={"Authorization": f"ApiKey {key}"})).is_success
    wrong_key = key[:-6] + "zzzzzz"
    response = await client.get("/api/v1/me", headers={"Authorization": f"ApiKey {wrong_key}"})
    assert response.status_code == 401

    contents = "".join(
        path.read_text(errors="replace") for path in log_dir(client).iterdir() if path.is_file()
    )
    assert "login_failed" in contents and "token_rejected" in contents
    assert "Invalid API key attempt" in contents
    secrets = (password, ADMIN_PASSWORD, access, refresh, forged, key, wrong_key)
    for secret in (*secrets, access.split(".")[2], key.removeprefix("sk_live_")):
        assert secret not in contents


async def test_rotation_keeps_paging_across_files(
    make_client: Any, backend: Any, tmp_path: Path
) -> None:
    client = await make_client(log_max_bytes=4096, log_backup_count=50)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    marker = uuid.uuid4().hex
    for index in range(40):
        await client.get("/health/live", headers={"X-Request-ID": f"{marker}-{index}"})
    logs = log_dir(client)
    assert (logs / "performance.log.1").exists()
    assert all(p.stat().st_size <= 4096 for p in logs.glob("performance.log*"))

    first = await get_logs(client, headers, "performance", q=marker, limit=15)
    # More lines arrive and the files rotate between the two pages.
    for index in range(40, 60):
        await client.get("/health/live", headers={"X-Request-ID": f"{marker}-{index}"})
    rest: list[str] = []
    cursor = first["next_cursor"]
    while cursor:
        page = await get_logs(client, headers, "performance", q=marker, limit=15, cursor=cursor)
        rest += [entry["request_id"] for entry in page["entries"]]
        cursor = page["next_cursor"]
    seen = [entry["request_id"] for entry in first["entries"]] + rest
    assert seen == [f"{marker}-{index}" for index in reversed(range(40))]


async def test_file_logging_can_be_turned_off(make_client: Any) -> None:
    client = await make_client(log_to_files=False)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    page = await get_logs(client, headers, "performance")
    assert page["entries"] == [] and page["next_cursor"] is None
    assert not log_dir(client).exists()


async def test_system_log_falls_back_to_a_file_then_to_nothing(
    make_client: Any, tmp_path: Path
) -> None:
    syslog = tmp_path / "syslog"
    syslog.write_text("".join(f"Nov 30 host daemon[{n}]: line {n}\n" for n in range(300)))
    client = await make_client(journalctl_bin="", system_log_files=[str(syslog)])
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    page = await get_logs(client, headers, "system", lines=3)
    assert page["source"] == str(syslog)
    assert page["logs"] == [f"Nov 30 host daemon[{n}]: line {n}" for n in (297, 298, 299)]
    assert page["lines"] == 3
    grep = await get_logs(client, headers, "system", lines=5, grep="LINE 12")
    assert grep["logs"] == [f"Nov 30 host daemon[{n}]: line {n}" for n in range(125, 130)]

    other = await make_client(journalctl_bin="", system_log_files=[str(tmp_path / "missing")])
    tokens = await login(other, ADMIN_EMAIL, ADMIN_PASSWORD)
    page = await get_logs(
        other, {"Authorization": f"Bearer {tokens['accessToken']}"}, "system", lines=10
    )
    assert page["logs"] == [] and page["source"] is None and page["message"]


async def test_system_log_with_the_machine_defaults_answers(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    page = await get_logs(client, admin_headers, "system", lines=5)
    assert len(page["logs"]) <= 5
    assert page["source"] in (None, "journalctl", "/var/log/syslog", "/var/log/messages")


async def test_nginx_logs_are_read_from_the_end(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], private_nginx: Any
) -> None:
    port = free_port()
    missing_root = private_nginx.prefix / "no-such-dir"
    (private_nginx.conf_dir / "logs-test.conf").write_text(
        f"server {{\n    listen 127.0.0.1:{port};\n"
        f"    location / {{ return 200 'ok'; }}\n"
        f"    location /static/ {{ root {missing_root}; }}\n}}\n"
    )
    os.kill(int(private_nginx.pid_file.read_text()), signal.SIGHUP)  # reload
    marker = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as nginx_client:
        for _ in range(100):  # the reload is asynchronous
            try:
                await nginx_client.get("/ready")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.1)
        for index in range(5):
            assert (await nginx_client.get(f"/{marker}/{index}")).status_code == 200
        assert (await nginx_client.get(f"/static/{marker}.css")).status_code == 404

    access = await get_logs(
        ops_client, ops_admin, "nginx", log="access", grep=f"/{marker}/", lines=3
    )
    assert access["log_type"] == "access" and access["lines"] == 3
    assert [
        f"/{marker}/{i} " in line for line, i in zip(access["logs"], (2, 3, 4), strict=True)
    ] == [True] * 3
    assert access["source"] == str(private_nginx.log_dir / "access.log")
    error = await get_logs(ops_client, ops_admin, "nginx", grep=marker)
    assert error["log_type"] == "error"
    assert len(error["logs"]) == 1 and "No such file or directory" in error["logs"][0]
    nothing = await get_logs(ops_client, ops_admin, "nginx", log="access", grep="no-such-text")
    assert nothing["logs"] == [] and nothing["lines"] == 0


async def test_nginx_log_missing_is_an_empty_answer(make_client: Any, tmp_path: Path) -> None:
    client = await make_client(nginx_log_dir=tmp_path / "empty")
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    page = await get_logs(
        client, {"Authorization": f"Bearer {tokens['accessToken']}"}, "nginx", log="access"
    )
    assert page == {
        "logs": [],
        "lines": 0,
        "source": None,
        "message": "Log file not found",
        "log_type": "access",
    }


async def test_nginx_and_system_logs_take_limit_as_lines(make_client: Any, tmp_path: Path) -> None:
    # Seed 002's clients ask `?limit=` (as of the other /api/logs endpoints).
    (tmp_path / "nginx").mkdir()
    (tmp_path / "nginx" / "access.log").write_text("".join(f"GET /{n}\n" for n in range(10)))
    syslog = tmp_path / "syslog"
    syslog.write_text("".join(f"daemon: line {n}\n" for n in range(10)))
    client = await make_client(
        nginx_log_dir=tmp_path / "nginx", journalctl_bin="", system_log_files=[str(syslog)]
    )
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    nginx = await get_logs(client, headers, "nginx", log="access", limit=2)
    assert nginx["logs"] == ["GET /8", "GET /9"] and nginx["lines"] == 2
    system = await get_logs(client, headers, "system", limit=2)
    assert system["logs"] == ["daemon: line 8", "daemon: line 9"]

    for endpoint in ("nginx", "system"):
        for bad in ({"limit": 0}, {"limit": 5001}, {"limit": "many"}):
            response = await client.get(f"/api/logs/{endpoint}", params=bad, headers=headers)
            assert response.status_code == 422, response.text
            assert response.json()["detail"][0]["loc"] == ["query", "limit"]
        both = await client.get(
            f"/api/logs/{endpoint}", params={"lines": 2, "limit": 3}, headers=headers
        )
        assert both.status_code == 422, both.text
        assert both.json()["detail"] == [
            {
                "type": "value_error",
                "loc": ["query", "limit"],
                "msg": "give `lines` or `limit`, not both",
            }
        ]


async def test_auto_cleanup_applies_the_policy_by_itself(make_client: Any) -> None:
    client = await make_client(log_cleanup_interval=0.2)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    old = log_dir(client) / "security.log.4"
    old.write_text('{"event": "old"}\n')
    _age(old, 10)
    response = await client.put(
        "/api/logs/retention-policy",
        json={"retention_days": 5, "auto_cleanup": True},
        headers=headers,
    )
    assert response.status_code == 200
    for _ in range(300):
        if not old.exists():
            break
        await asyncio.sleep(0.05)
    assert not old.exists()
    for _ in range(100):  # the audit row commits just after the file goes
        audit = await get_logs(client, headers, "audit", action="logs.cleanup")
        if audit["total"]:
            break
        await asyncio.sleep(0.05)
    assert audit["entries"][0]["actor"] == "log-retention"
    assert audit["entries"][0]["after"]["removed_files"] == ["security.log.4"]


def test_an_unwritable_log_dir_stops_the_start_with_a_clear_message(
    settings_factory: Any, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SettingsError, match="LOG_TO_FILES=false"):
        create_app(settings_factory(log_dir=blocker / "logs"))


async def test_console_keeps_filtering_at_log_level(
    capsys: pytest.CaptureFixture[str], make_client: Any
) -> None:
    client = await make_client(log_level="WARNING", log_format="json")
    marker = uuid.uuid4().hex
    await client.get("/health/live", headers={"X-Request-ID": marker})
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": "wrong-password-1"}
    )
    assert response.status_code == 401
    console = capsys.readouterr().err
    assert '"event":"login_failed"' in console  # a warning: shown as before, compact JSON
    assert marker not in console  # an INFO access line: still not on the console
    assert marker in (log_dir(client) / "performance.log").read_text()
    assert marker not in (log_dir(client) / "application.log").read_text()


async def test_the_policy_read_can_be_sent_back_and_a_partial_body_is_merged(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    url = "/api/logs/retention-policy"
    policy = await get_logs(client, admin_headers, "retention-policy")
    # What GET answered, read-only fields included, goes back unchanged.
    response = await client.put(url, json=policy, headers=admin_headers)
    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["updated_by"] == "admin" and stored["updated_at"] is not None
    assert {k: stored[k] for k in policy if not k.startswith("updated")} == {
        k: v for k, v in policy.items() if not k.startswith("updated")
    }
    # And again, now that they hold values (a client's stale ones are ignored).
    stored["updated_by"], stored["retention_days"] = "somebody else", 12
    response = await client.put(url, json=stored, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["updated_by"] == "admin" and response.json()["retention_days"] == 12

    # A partial body changes only what it names.
    response = await client.put(
        url, json={"max_size_mb": 50, "audit_retention_days": 90}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    response = await client.put(url, json={"auto_cleanup": True}, headers=admin_headers)
    assert response.status_code == 200, response.text
    merged = await get_logs(client, admin_headers, "retention-policy")
    assert (
        merged["retention_days"],
        merged["audit_retention_days"],
        merged["max_size_mb"],
        merged["auto_cleanup"],
    ) == (12, 90, 50, True)
    # An explicit null clears the size cap (the one optional field).
    response = await client.put(url, json={"max_size_mb": None}, headers=admin_headers)
    assert response.status_code == 200 and response.json()["max_size_mb"] is None
    assert response.json()["retention_days"] == 12 and response.json()["auto_cleanup"] is True
    audit = await get_logs(client, admin_headers, "audit", action="logs.retention_policy.update")
    assert audit["entries"][0]["before"]["max_size_mb"] == 50
    assert audit["entries"][0]["after"]["max_size_mb"] is None


@pytest.mark.parametrize("level", ["ERROR", "Error", "error", "WARNING", "Critical"])
async def test_levels_are_accepted_in_any_letter_case(
    client: httpx.AsyncClient, admin_headers: dict[str, str], level: str
) -> None:
    marker = uuid.uuid4().hex
    await client.get("/api/v1/me", headers={**admin_headers, "X-Request-ID": marker})
    for endpoint in ("application", "structured", "performance", "security"):
        page = await get_logs(client, admin_headers, endpoint, level=level, q=marker)
        assert page["entries"] == []  # the access line is INFO: below each of these
    info = await get_logs(client, admin_headers, "performance", level="INFO", q=marker)
    assert [entry["request_id"] for entry in info["entries"]] == [marker]


@pytest.mark.parametrize("endpoint", ["application", "performance", "audit"])
@pytest.mark.parametrize(
    "params",
    [
        {"to": "0001-01-01T00:00:00Z"},
        {"from": "0001-01-01T00:00:00Z"},
        {"from": "0001-01-01T00:00:00Z", "to": "0001-01-01T00:00:00Z"},
        {"to": "9999-12-31T23:59:59Z"},
        {"from": "9999-12-31T23:59:59Z"},
    ],
)
async def test_times_at_the_ends_of_the_calendar_are_answered(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    endpoint: str,
    params: dict[str, Any],
) -> None:
    response = await client.get(f"/api/logs/{endpoint}", params=params, headers=admin_headers)
    assert response.status_code == 200, response.text


async def test_file_lines_are_compact_json_as_seed_002_greps_them(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """`grep '"level":"warning"' structured.log`, `grep '"user_id":"admin"' audit.log`:
    no space after the colons (winston's JSON.stringify), level names as logged."""
    me = (await client.get("/api/v1/me", headers=admin_headers)).json()["data"]["user"]
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": "wrong-password-1"}
    )
    assert response.status_code == 401
    response = await client.put(
        "/api/logs/retention-policy", json={"retention_days": 9}, headers=admin_headers
    )
    assert response.status_code == 200
    logs = log_dir(client)
    assert '"level":"info"' in (logs / "performance.log").read_text()
    security = (logs / "security.log").read_text()
    assert '"event":"login_failed"' in security and '"level":"warning"' in security
    structured = (logs / "structured.log").read_text().splitlines()
    assert any('"level":"warning"' in line and "login_failed" in line for line in structured)

    # audit.log names the actor as the seed's grep does: by login name, the id beside it.
    [line] = [s for s in (logs / "audit.log").read_text().splitlines() if '"user_id":"admin"' in s]
    entry = json.loads(line)
    assert entry["action"] == "logs.retention_policy.update"
    assert (entry["actor"], entry["actor_id"]) == ("admin", me["id"])
    # The audit endpoint reads the table and answers as before: user_id is the id there.
    audit = await get_logs(client, admin_headers, "audit", action="logs.retention_policy.update")
    assert set(audit["entries"][0]) == {
        *("id", "timestamp", "actor", "user_id", "action", "target", "before", "after"),
        *("ip", "request_id", "outcome"),
    }
    assert audit["entries"][0]["user_id"] == me["id"]
    # The stream reader's user filter finds the line by either.
    for user in ("admin", me["id"]):
        page = await get_logs(client, admin_headers, "structured", source="audit", user=user)
        assert [e["action"] for e in page["entries"]] == ["logs.retention_policy.update"]


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")], ids=["compact", "spaced"])
async def test_a_line_clearly_before_from_ends_the_scan(
    client: httpx.AsyncClient, admin_headers: dict[str, str], separators: tuple[str, str]
) -> None:
    """Lines are only nearly in time order: the scan ends at the first line more than
    TIME_ORDER_SLACK before `from`, in today's compact lines as in older spaced ones."""
    marker = uuid.uuid4().hex
    now = datetime.now(UTC)

    def line(moment: datetime, event: str) -> str:
        entry = {"timestamp": moment.isoformat(), "level": "info", "event": event}
        return json.dumps(entry, separators=separators) + "\n"

    with (log_dir(client) / "performance.log").open("a") as handle:
        handle.write(line(now, marker) + line(now - timedelta(hours=1), "older"))
    since = {"from": (now - timedelta(minutes=1)).isoformat()}
    page = await get_logs(client, admin_headers, "performance", q=marker, **since)
    assert page["entries"] == []  # behind the older line: not reached
    page = await get_logs(client, admin_headers, "performance", q=marker)
    assert [entry["event"] for entry in page["entries"]] == [marker]


async def test_a_json_fragment_finds_lines_of_either_spacing(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """A search saved from the older spaced lines (`"event": "login_failed"`) finds
    today's compact lines and the spaced ones still in the files, as the compact form
    does; text without quotes is looked for as written, spaces and all."""
    marker = uuid.uuid4().hex
    entry = {"level": "warning", "event": marker, "detail": "checked: yes, done"}
    with (log_dir(client) / "security.log").open("a") as handle:
        for form in ("spaced", "compact"):
            separators = (", ", ": ") if form == "spaced" else (",", ":")
            line = {"timestamp": datetime.now(UTC).isoformat(), **entry, "form": form}
            handle.write(json.dumps(line, separators=separators) + "\n")
    for needle in (
        f'"event": "{marker}", "detail": "checked: yes, done"',
        f'"event":"{marker}","detail":"checked: yes, done"',
        f'"event" :"{marker}",  "detail"',
    ):
        page = await get_logs(client, admin_headers, "security", q=needle)
        assert [e["form"] for e in page["entries"]] == ["compact", "spaced"], needle
    page = await get_logs(client, admin_headers, "security", q=marker)
    assert len(page["entries"]) == 2
    for plain, found in (("checked: yes, done", 2), ("checked:yes,done", 0)):
        page = await get_logs(client, admin_headers, "security", q=plain, level="warning")
        assert len([e for e in page["entries"] if e["event"] == marker]) == found, plain


async def test_structured_log_is_application_log_under_the_seeds_name(
    make_client: Any, tmp_path: Path
) -> None:
    """seed 002's `tail -f LOG_DIR/structured.log`: a relative symlink to application.log
    that follows its rotation, survives a second start on the same LOG_DIR (several
    processes share it) and that neither the cleanup nor the readers count as a file."""
    settings = {"log_level": "INFO", "log_max_bytes": 4096, "log_backup_count": 50}
    client = await make_client(**settings)
    logs = log_dir(client)
    alias = logs / "structured.log"
    assert alias.is_symlink() and os.readlink(alias) == "application.log"
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    marker = uuid.uuid4().hex
    for index in range(40):
        await client.get("/health/live", headers={"X-Request-ID": f"{marker}-{index}"})
    assert (logs / "application.log.1").exists()
    assert alias.samefile(logs / "application.log")
    assert f"{marker}-39" in alias.read_text()

    for rotated in logs.glob("application.log.*"):
        _age(rotated, 10)
    response = await client.put(
        "/api/logs/retention-policy", json={"retention_days": 5}, headers=headers
    )
    assert response.status_code == 200
    result = (await client.post("/api/logs/cleanup", headers=headers)).json()
    removed = {item["file"] for item in result["removed_files"]}
    assert removed and all(name.startswith("application.log.") for name in removed)
    assert alias.is_symlink() and alias.samefile(logs / "application.log")

    await make_client(**settings)  # finds the link in place
    assert os.readlink(alias) == "application.log"


async def test_a_filesystem_without_symlinks_only_skips_the_alias(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Path, target: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    client = await make_client(log_level="DEBUG")
    logs = log_dir(client)
    assert not (logs / "structured.log").exists()
    assert "structured_log_alias_skipped" in (logs / "application.log").read_text()


async def test_a_database_connection_cut_off_is_a_warning_without_a_traceback(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """What SQLAlchemy's pool logs when a cancellation cuts a connection's reset short, or
    when aiosqlite cannot force-close one (both seen with SSE clients leaving an overloaded
    server): the pool drops the connection; no error with a library traceback."""

    pool_log = logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool")
    for message, exc in (
        ("Exception during reset or similar", asyncio.CancelledError()),
        ("Exception terminating connection", NotImplementedError("terminate_force_close()")),
    ):
        try:
            raise exc
        except BaseException:
            pool_log.error(message, exc_info=True)
    page = await get_logs(client, admin_headers, "application", q="database_connection_dropped")
    entries = page["entries"]
    assert [e["level"] for e in entries] == ["warning", "warning"], entries
    assert all("exception" not in e and "Traceback" not in json.dumps(e) for e in entries)
    assert "Exception during reset or similar (CancelledError)" in json.dumps(entries)
