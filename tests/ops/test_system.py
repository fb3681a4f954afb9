"""System status, nginx restart/reload and log tails against a private real nginx."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login
from vpsapi.ops.audit.models import AuditEntry


async def audit_actions(client: httpx.AsyncClient) -> list[str]:
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        entries = (await session.execute(select(AuditEntry))).scalars().all()
        return [entry.action for entry in entries]


async def test_status_reports_host_nginx_and_service(
    ops_client: httpx.AsyncClient, ops_user: dict[str, str]
) -> None:
    response = await ops_client.get("/api/system/status", headers=ops_user)
    assert response.status_code == 200, response.text
    status = response.json()
    assert status["nginx_running"] is True and status["nginx_status"] == "active"
    assert status["nginx_version"] != "unknown"
    assert 0 <= status["cpu_usage"] <= 100 and 0 < status["memory_usage"] <= 100
    assert status["memory_total"] > 0 and status["disk_total"] > 0
    assert len(status["load_averages"]) == 3 and status["uptime"].endswith("h")
    assert status["network"]["bytes_recv"] >= 0
    assert status["service_version"] and status["api_pid"] > 0


async def test_status_needs_login(ops_client: httpx.AsyncClient) -> None:
    response = await ops_client.get("/api/system/status")
    assert response.status_code == 401
    assert response.json()["detail"]


async def test_status_sees_nginx_stopped(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], private_nginx: Any
) -> None:
    private_nginx.stop()
    response = await ops_client.get("/api/system/status", headers=ops_admin)
    assert response.json()["nginx_running"] is False
    assert response.json()["nginx_status"] == "inactive"


async def test_reload_and_restart_are_admin_only_and_audited(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], ops_user: dict[str, str]
) -> None:
    for action in ("reload", "restart"):
        denied = await ops_client.post(f"/api/system/nginx/{action}", headers=ops_user)
        assert denied.status_code == 403
    assert await audit_actions(ops_client) == []

    reloaded = await ops_client.post("/api/system/nginx/reload", headers=ops_admin)
    assert reloaded.status_code == 200, reloaded.text
    assert "successful" in reloaded.json()["output"]  # nginx -t's words
    restarted = await ops_client.post("/api/system/nginx/restart", headers=ops_admin)
    assert restarted.status_code == 200, restarted.text
    status = await ops_client.get("/api/system/status", headers=ops_admin)
    assert status.json()["nginx_running"] is True
    assert sorted(await audit_actions(ops_client)) == [
        "system.nginx.reload",
        "system.nginx.restart",
    ]


async def test_reload_of_a_broken_config_is_refused_with_nginx_text(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], private_nginx: Any
) -> None:
    (private_nginx.conf_dir / "vpsapi-broken.conf").write_text("server { listen nonsense; }\n")
    response = await ops_client.post("/api/system/nginx/reload", headers=ops_admin)
    assert response.status_code == 422
    assert "listen" in response.json()["detail"]
    # The refused change is audited as a failure with nginx's reason; nothing as a success.
    async with ops_client.app.state.db.session() as session:  # type: ignore[attr-defined]
        entries = (await session.execute(select(AuditEntry))).scalars().all()
    assert [(e.action, e.outcome, e.target) for e in entries] == [
        ("POST /api/system/nginx/reload", "failure", "/api/system/nginx/reload")
    ]
    assert entries[0].after["status"] == 422 and "listen" in entries[0].after["error"]
    assert entries[0].actor and entries[0].request_id == response.headers["x-request-id"]
    status = await ops_client.get("/api/system/status", headers=ops_admin)
    assert status.json()["nginx_running"] is True  # the old configuration keeps serving


async def test_failed_restart_is_a_422_with_the_command_output(
    make_client: Any, private_nginx: Any
) -> None:
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    settings = private_nginx.settings()
    settings["nginx_restart_cmd"] = "sh -c 'echo restart refused; exit 3'"
    client = await make_client(**settings)
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    response = await client.post(
        "/api/system/nginx/restart", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422
    assert "restart refused" in response.json()["detail"]


async def test_a_restart_command_whose_daemon_keeps_its_output_open_returns(
    make_client: Any, private_nginx: Any, tmp_path: Path
) -> None:
    """A restart command that starts a daemon (as `nginx` itself does) ends while the daemon
    still holds its output: the answer comes when the command ends (it hung 30 s, then 500)."""
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    daemon_pid = tmp_path / "daemon.pid"
    settings = private_nginx.settings()
    settings["nginx_restart_cmd"] = f"sh -c 'sleep 60 & echo $! > {daemon_pid}; echo restarted'"
    client = await make_client(**settings)
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    try:
        response = await client.post(
            "/api/system/nginx/restart", headers={"Authorization": f"Bearer {token}"}
        )
    finally:
        os.kill(int(daemon_pid.read_text()), signal.SIGKILL)
    assert response.status_code == 200, response.text
    assert "restarted" in response.text


def write_log(private_nginx: Any, name: str, lines: list[str]) -> None:
    with (private_nginx.log_dir / name).open("a") as handle:
        handle.write("".join(line + "\n" for line in lines))


async def test_nginx_logs_tail_grep_and_bounds(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    ops_user: dict[str, str],
    private_nginx: Any,
) -> None:
    # Enough text that the tail spans several read blocks.
    write_log(private_nginx, "access.log", [f"GET /page/{i} abc" for i in range(20000)])
    write_log(private_nginx, "access.log", ["GET /a.c literal", "GET /last abc"])
    write_log(private_nginx, "error.log", ["[error] upstream timed out"])

    url = "/api/system/nginx/logs"
    tail = await ops_client.get(url, params={"log": "access", "lines": 3}, headers=ops_admin)
    assert tail.status_code == 200, tail.text
    assert tail.json()["access_logs"] == [
        "GET /page/19999 abc",
        "GET /a.c literal",
        "GET /last abc",
    ]
    assert "error_logs" not in tail.json()

    # grep is a plain substring: "a.c" is not a regular expression matching "abc".
    grep = await ops_client.get(url, params={"log": "access", "grep": "a.c"}, headers=ops_admin)
    assert grep.json()["access_logs"] == ["GET /a.c literal"]
    far = await ops_client.get(
        url, params={"log": "access", "grep": "/page/5 ", "lines": 1000}, headers=ops_admin
    )
    assert far.json()["access_logs"] == ["GET /page/5 abc"]

    both = await ops_client.get(url, params={"lines": 1}, headers=ops_admin)
    assert both.json()["access_logs"] == ["GET /last abc"]
    assert both.json()["error_logs"][-1].endswith("upstream timed out")

    many = await ops_client.get(url, params={"log": "access", "lines": 1000}, headers=ops_admin)
    assert len(many.json()["access_logs"]) == 1000

    for bad in (
        {"lines": 0},
        {"lines": 1001},
        {"lines": "many"},
        {"log": "secrets"},
        {"grep": ""},
        {"grep": "x" * 201},
    ):
        response = await ops_client.get(url, params=bad, headers=ops_admin)
        assert response.status_code == 422, bad
        assert response.json()["detail"]

    denied = await ops_client.get(url, headers=ops_user)
    assert denied.status_code == 403


async def test_nginx_log_not_written_yet(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], private_nginx: Any
) -> None:
    (private_nginx.log_dir / "access.log").unlink(missing_ok=True)
    alone = await ops_client.get(
        "/api/system/nginx/logs", params={"log": "access"}, headers=ops_admin
    )
    assert alone.status_code == 404
    both = await ops_client.get("/api/system/nginx/logs", headers=ops_admin)
    assert both.status_code == 200 and both.json()["access_logs"] == []


async def test_nginx_logs_take_limit_as_lines(make_client: Any, tmp_path: Path) -> None:
    # Seed 002's clients ask `?limit=` (as of the /api/logs endpoints).
    (tmp_path / "access.log").write_text("".join(f"GET /{n}\n" for n in range(10)))
    client = await make_client(nginx_log_dir=tmp_path)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    url = "/api/system/nginx/logs"
    tail = await client.get(url, params={"log": "access", "limit": 2}, headers=headers)
    assert tail.status_code == 200, tail.text
    assert tail.json()["access_logs"] == ["GET /8", "GET /9"] and tail.json()["lines"] == 2
    for bad in ({"limit": 0}, {"limit": 1001}, {"lines": 2, "limit": 2}):
        response = await client.get(url, params={"log": "access", **bad}, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]


@pytest.fixture
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `systemctl` first on PATH that only notes it was called: a test must never touch
    the machine's own services."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    called = tmp_path / "systemctl-called"
    script = bin_dir / "systemctl"
    script.write_text(f'#!/bin/sh\necho "$@" >> {called}\necho "no systemd here"; exit 1\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return called


async def test_restart_of_a_private_nginx_stops_and_starts_it_without_systemctl(
    make_client: Any, private_nginx: Any, fake_systemctl: Path
) -> None:
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    settings = private_nginx.settings()
    settings["nginx_restart_cmd"] = ""  # the default: NGINX_PREFIX / NGINX_MAIN_CONF decide
    client = await make_client(**settings)
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    [old_master] = private_nginx.masters()

    response = await client.post("/api/system/nginx/restart", headers=headers)
    assert response.status_code == 200, response.text
    assert "syntax is ok" in response.json()["output"]  # tested before it was stopped
    assert not fake_systemctl.exists()
    [new_master] = private_nginx.settled_masters()
    assert new_master.pid != old_master.pid and not old_master.is_running()
    assert int(private_nginx.pid_file.read_text()) == new_master.pid
    status = await client.get("/api/system/status", headers=headers)
    assert status.json()["nginx_running"] is True

    # A configuration nginx refuses: 422 with its words, and the running nginx stays.
    (private_nginx.conf_dir / "vpsapi-broken.conf").write_text("server { listen nonsense; }\n")
    refused = await client.post("/api/system/nginx/restart", headers=headers)
    assert refused.status_code == 422 and "listen" in refused.json()["detail"]
    assert [m.pid for m in private_nginx.masters()] == [new_master.pid]
    (private_nginx.conf_dir / "vpsapi-broken.conf").unlink()

    # Restarts asked at once run one after the other: each finds nginx running and
    # leaves one master (at the same time, the later ones failed to bind: 422).
    racing = await asyncio.gather(
        *(client.post("/api/system/nginx/restart", headers=headers) for _ in range(3))
    )
    assert [r.status_code for r in racing] == [200, 200, 200], [r.text for r in racing]
    assert len(private_nginx.masters()) == 1

    # Stopped: a restart starts it.
    private_nginx.stop()
    response = await client.post("/api/system/nginx/restart", headers=headers)
    assert response.status_code == 200, response.text
    assert len(private_nginx.masters()) == 1
    assert not fake_systemctl.exists()


async def test_restart_of_the_system_nginx_is_systemctl(
    make_client: Any, private_nginx: Any, fake_systemctl: Path
) -> None:
    """No prefix nor main config named: the distribution's nginx, run by systemd."""
    from support import ADMIN_EMAIL, ADMIN_PASSWORD, login

    settings = private_nginx.settings()
    settings.update(nginx_restart_cmd="", nginx_prefix="", nginx_main_conf="")
    client = await make_client(**settings)
    token = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
    response = await client.post(
        "/api/system/nginx/restart", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 422  # the fake refuses
    assert "no systemd here" in response.json()["detail"]
    assert fake_systemctl.read_text().split() == ["restart", "nginx"]


async def test_nginx_logs_answer_matches_its_documented_schema(
    ops_client: httpx.AsyncClient,
) -> None:
    """`grep` is left out of an answer without one, so it cannot be a required field."""
    spec = (await ops_client.get("/openapi.json")).json()
    assert "grep" not in spec["components"]["schemas"]["NginxLogs"].get("required", [])
