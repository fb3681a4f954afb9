"""Monitoring: samples and history, alert rules, alerts with email and webhook
notifications (a local SMTP server and a local HTTP receiver), and WS /ws/monitoring
against real server processes."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from support import ADMIN_EMAIL, ADMIN_PASSWORD, free_port, login
from vpsapi.core.db import Database, utcnow
from vpsapi.ops.audit.models import AuditEntry
from vpsapi.ops.monitoring.models import MetricSample, MonitorLease

RULES = "/api/monitoring/alerts/rules"


# ---- local receivers -------------------------------------------------------------------


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Message] = field(default_factory=list)


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    mailbox = Mailbox("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            mailbox.messages.append(message_from_bytes(envelope.content))
            return "250 OK"

    controller = Controller(Handler(), hostname=mailbox.host, port=mailbox.port)
    controller.start()
    try:
        yield mailbox
    finally:
        controller.stop()


@dataclass
class WebhookReceiver:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    posts: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield WebhookReceiver(f"http://127.0.0.1:{server.server_address[1]}/hook", posts)
    finally:
        server.shutdown()
        server.server_close()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, attempts: int = 600) -> Any:
    """Poll `check` until it returns something truthy (samples arrive every 0.2 s)."""
    for _ in range(attempts):
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


# ---- fixtures ----------------------------------------------------------------------------


@pytest.fixture
async def mon_client(
    make_client: Any, smtp_server: Mailbox, webhook_receiver: WebhookReceiver
) -> httpx.AsyncClient:
    client: httpx.AsyncClient = await make_client(
        metrics_interval=0.2,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        alert_email_to=["ops@example.com"],
        alert_webhook_url=webhook_receiver.url,
    )
    return client


@pytest.fixture
async def mon_admin(mon_client: httpx.AsyncClient) -> dict[str, str]:
    tokens = await login(mon_client, ADMIN_EMAIL, ADMIN_PASSWORD)
    return {"Authorization": f"Bearer {tokens['accessToken']}"}


async def audit_actions(client: httpx.AsyncClient) -> list[str]:
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        return [e.action for e in (await session.execute(select(AuditEntry))).scalars()]


def rule(**overrides: Any) -> dict[str, Any]:
    return {"name": "cpu busy", "metric": "cpu_usage", "operator": ">", "threshold": 90} | overrides


# ---- rules -------------------------------------------------------------------------------


async def test_rule_crud_is_admin_only_and_audited(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user: Any
) -> None:
    _, user = await create_user("user")
    created = await client.post(
        RULES,
        json=rule(
            id="ignored",
            duration=60,
            severity="critical",
            metric="cpu",
            notification_webhook="https://hooks.example.com/x",
        ),
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    saved = created.json()["rule"]
    assert saved["id"] != "ignored" and saved["metric"] == "cpu_usage"
    assert saved["channels"] == ["webhook"]  # inferred from notification_webhook
    assert saved["enabled"] is True and saved["fired"] is False

    listed = await client.get(RULES, headers=user)
    assert listed.status_code == 200 and [r["id"] for r in listed.json()["rules"]] == [saved["id"]]

    updated = await client.put(
        f"{RULES}/{saved['id']}",
        json=rule(threshold=75, operator="<=", channels=[], enabled=False),
        headers=admin_headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["rule"]["threshold"] == 75
    assert updated.json()["rule"]["channels"] == [] and updated.json()["rule"]["enabled"] is False

    for method, path, body in (
        ("POST", RULES, rule()),
        ("PUT", f"{RULES}/{saved['id']}", rule()),
        ("DELETE", f"{RULES}/{saved['id']}", None),
        ("POST", "/api/monitoring/alerts/anything/resolve", None),
    ):
        denied = await client.request(method, path, json=body, headers=user)
        assert denied.status_code == 403, (method, path)

    deleted = await client.delete(f"{RULES}/{saved['id']}", headers=admin_headers)
    assert deleted.status_code == 200
    assert (await client.get(RULES, headers=user)).json()["rules"] == []
    for method in ("PUT", "DELETE"):
        missing = await client.request(
            method, f"{RULES}/{saved['id']}", json=rule(), headers=admin_headers
        )
        assert missing.status_code == 404 and missing.json()["detail"] == "Alert rule not found"
    missing = await client.post("/api/monitoring/alerts/nope/resolve", headers=admin_headers)
    assert missing.status_code == 404

    assert await audit_actions(client) == [
        "monitoring.rule.create",
        "monitoring.rule.update",
        "monitoring.rule.delete",
    ]


@pytest.mark.parametrize(
    "body",
    [
        rule(metric="temperature"),
        rule(operator="!="),
        rule(operator="> 1; DROP TABLE"),
        rule(threshold="high"),
        # JSON's true is no number, text no boolean (lax mode read them as 1 and true).
        rule(threshold=True),
        rule(duration=True),
        rule(enabled="yes"),
        rule(duration=-1),
        rule(severity="apocalyptic"),
        rule(channels=["sms"]),
        rule(name=""),
        rule(notification_email="not-an-address"),
        rule(notification_webhook="file:///etc/passwd"),
        rule(notification_webhook="http://"),
        # A channel with nowhere to send to (no ALERT_EMAIL_TO / ALERT_WEBHOOK_URL here).
        rule(channels=["email"]),
        rule(channels=["webhook"]),
        {"metric": "cpu_usage", "operator": ">", "threshold": 1},
    ],
)
async def test_bad_rules_are_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post(RULES, json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert (await client.get(RULES, headers=admin_headers)).json()["rules"] == []


@pytest.mark.parametrize(
    ("word", "symbol"), [("gt", ">"), ("GTE", ">="), ("lt", "<"), ("lte", "<="), ("eq", "==")]
)
async def test_an_operator_may_be_given_in_words(
    client: httpx.AsyncClient, admin_headers: dict[str, str], word: str, symbol: str
) -> None:
    response = await client.post(RULES, json=rule(operator=word), headers=admin_headers)
    assert response.status_code == 201, response.text
    assert response.json()["rule"]["operator"] == symbol


# ---- samples and history ---------------------------------------------------------------


async def test_history_is_downsampled_in_sql(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    # Within the retention period (older samples are purged), before the sampler's own.
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    base_ms = int(base.timestamp() * 1000)
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        for i in range(12):  # one sample every 10 s for two minutes
            session.add(
                MetricSample(
                    timestamp_ms=base_ms + i * 10_000, cpu_usage=float(i), memory_usage=50.0
                )
            )
    url = "/api/monitoring/metrics/history"

    def iso(moment: datetime) -> str:
        return moment.isoformat().replace("+00:00", "Z")

    window = {"from": iso(base), "to": iso(base + timedelta(minutes=2)), "step": 60}

    one = await client.get(url, params={**window, "metric": "cpu"}, headers=admin_headers)
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["metric"] == "cpu_usage" and body["step"] == 60 and "from" in body
    assert [(p["samples"], p["cpu_usage"], p["min"], p["max"]) for p in body["metrics"]] == [
        (6, 2.5, 0.0, 5.0),
        (6, 8.5, 6.0, 11.0),
    ]
    assert body["metrics"][1]["timestamp"] == iso(base + timedelta(minutes=1))

    # Buckets are aligned to the epoch: a 120 s step needs an even minute.
    even = base - timedelta(minutes=base.minute % 2)
    every = await client.get(
        url,
        params={"from": iso(even), "to": iso(even + timedelta(minutes=4)), "step": 120},
        headers=admin_headers,
    )
    assert every.status_code == 200 and every.json()["metrics"], every.text
    points = every.json()["metrics"]
    assert sum(p["samples"] for p in points) == 12
    for point in points:
        assert point["memory_usage"] == 50 and point["network_in"] is None and "min" not in point
    assert points[0]["cpu_usage"] == (5.5 if even == base else 2.5)

    for bad in (
        {**window, "metric": "temperature"},
        {**window, "from": iso(base + timedelta(minutes=3))},  # after `to`
        {**window, "step": 0},
        {**window, "step": 1, "from": iso(base - timedelta(days=1))},  # too many points
        {**window, "from": "yesterday"},
        {**window, "from": base.replace(tzinfo=None).isoformat()},  # no timezone
    ):
        response = await client.get(url, params=bad, headers=admin_headers)
        assert response.status_code == 422, bad
        assert response.json()["detail"]
    assert (await client.get(url)).status_code == 401


@pytest.mark.parametrize(
    ("params", "status"),
    [
        # `from` defaults to an hour before `to`: there is no such moment (was a 500).
        ({"to": "0001-01-01T00:00:00Z"}, 422),
        ({"to": "0001-01-01T00:59:59+00:00"}, 422),
        ({"to": "0001-01-01T01:00:00Z"}, 200),
        ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z", "step": 3600}, 200),
        # Before year 1 once in UTC: no such moment (was answered, echoed as given).
        ({"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-01T01:00:00+05:00"}, 422),
        ({"from": "0001-01-01T05:00:00+05:00", "to": "0001-01-01T06:00:00+05:00"}, 200),
        ({"from": "0001-01-01T00:00:00Z"}, 200),  # up to now, in about 360 buckets
        ({"to": "9999-12-31T23:59:59-05:00"}, 422),  # after year 9999 in UTC
        ({"from": "9999-12-31T23:59:59Z"}, 422),  # after `to` (now)
        ({"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z", "step": 1}, 422),
    ],
)
async def test_history_at_the_ends_of_time_is_never_a_500(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, Any], status: int
) -> None:
    response = await client.get(
        "/api/monitoring/metrics/history", params=params, headers=admin_headers
    )
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["detail"]
    else:
        assert isinstance(response.json()["metrics"], list)  # up to now: the sampler's


async def test_history_refuses_a_moment_before_year_1_in_utc_as_citypulse_does(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    moment = {"from": "0001-01-01T00:00:00+05:00"}
    history = await client.get(
        "/api/monitoring/metrics/history", params=moment, headers=admin_headers
    )
    energy = await client.get("/api/v1/citypulse/energy", params=moment, headers=admin_headers)
    assert (history.status_code, energy.status_code) == (422, 422), history.text
    [detail] = history.json()["detail"]
    assert detail["loc"] == ["query", "from"]
    assert [detail["msg"]] == energy.json()["errors"]["from"]


async def test_samples_older_than_the_retention_period_are_deleted(
    mon_client: httpx.AsyncClient, mon_admin: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    async with mon_client.app.state.db.session() as session:  # type: ignore[attr-defined]
        for age in (31, 29):  # METRICS_RETENTION_DAYS is 30
            moment = now - timedelta(days=age)
            session.add(MetricSample(timestamp_ms=int(moment.timestamp() * 1000), cpu_usage=1.0))
    window = {
        "from": (now - timedelta(days=32)).isoformat(),
        "to": (now - timedelta(days=28)).isoformat(),
        "step": 86400,
        "metric": "cpu_usage",
    }

    async def kept() -> Any:
        response = await mon_client.get(
            "/api/monitoring/metrics/history", params=window, headers=mon_admin
        )
        points = response.json()["metrics"]
        return points if sum(p["samples"] for p in points) == 1 else None

    [point] = await eventually(kept, "the 31-day-old sample to go")
    assert datetime.fromisoformat(point["timestamp"]) > now - timedelta(days=30)


async def test_current_metrics_include_the_service_request_figures(
    mon_client: httpx.AsyncClient, mon_admin: dict[str, str]
) -> None:
    async def measured() -> Any:
        await mon_client.get("/health")
        await mon_client.get("/api/does-not-exist")
        body = (await mon_client.get("/api/monitoring/metrics", headers=mon_admin)).json()
        current = body["current"]
        return body if current and current.get("requests_per_second") else None

    body = await eventually(measured, "a sample with this service's request rate")
    current = body["current"]
    assert 0 <= current["cpu_usage"] <= 100 and 0 < current["memory_usage"] <= 100
    assert current["response_time_p95"] > 0 and current["error_rate"] == 0
    assert current["nginx_connections"] is None  # no NGINX_STATUS_URL here
    assert body["history"][-1] == current and body["alerts"] == []

    async def network_rate() -> Any:
        body = (await mon_client.get("/api/monitoring/metrics", headers=mon_admin)).json()
        return body["current"]["network_in"] is not None

    await eventually(network_rate, "a network rate (needs two samples)")


async def test_nginx_figures_come_from_stub_status(make_client: Any, private_nginx: Any) -> None:
    port = free_port()
    (private_nginx.conf_dir / "vpsapi-status.conf").write_text(
        f"server {{ listen 127.0.0.1:{port}; location = /nginx_status {{ stub_status; }} }}\n"
    )
    private_nginx.stop()
    private_nginx.start()
    client = await make_client(
        metrics_interval=0.2,
        nginx_status_url=f"http://127.0.0.1:{port}/nginx_status",
        **private_nginx.settings(),
    )
    headers = {
        "Authorization": f"Bearer {(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))['accessToken']}"
    }

    async def nginx_figures() -> Any:
        current = (await client.get("/api/monitoring/metrics", headers=headers)).json()["current"]
        return current if current.get("nginx_requests_per_second") is not None else None

    current = await eventually(nginx_figures, "nginx figures from stub_status")
    assert current["nginx_connections"] >= 1  # the sampler's own request is active
    assert current["nginx_requests_per_second"] > 0


# ---- alerts ------------------------------------------------------------------------------


async def test_alert_fires_once_notifies_and_resolves_by_itself(
    mon_client: httpx.AsyncClient,
    mon_admin: dict[str, str],
    smtp_server: Mailbox,
    webhook_receiver: WebhookReceiver,
) -> None:
    created = await mon_client.post(
        RULES,
        json=rule(
            name="always",
            operator=">=",
            threshold=0,
            duration=0,
            severity="critical",
            channels=["email", "webhook"],
        ),
        headers=mon_admin,
    )
    assert created.status_code == 201, created.text
    rule_id = created.json()["rule"]["id"]

    async def active() -> Any:
        alerts = await mon_client.get(
            "/api/monitoring/alerts", params={"status": "active"}, headers=mon_admin
        )
        return alerts.json()["alerts"]

    [alert] = await eventually(active, "the alert to fire")
    assert alert["rule_id"] == rule_id and alert["severity"] == "critical"
    assert alert["metric"] == "cpu_usage" and alert["value"] >= 0

    await eventually(lambda: _ready(len(smtp_server.messages) >= 1), "the alert email")
    mail = smtp_server.messages[0]
    assert mail["To"] == "ops@example.com"
    assert "always" in mail["Subject"] and "fired" in mail["Subject"]
    assert alert["id"] in mail.get_payload()
    await eventually(lambda: _ready(len(webhook_receiver.posts) >= 1), "the alert webhook")
    assert webhook_receiver.posts[0]["event"] == "alert.fired"
    assert webhook_receiver.posts[0]["alert"]["id"] == alert["id"]

    # The condition keeps holding for several samples: still exactly one alert.
    await eventually(
        lambda: _samples_after(mon_client, mon_admin, alert["timestamp"], 3), "three more samples"
    )
    alerts = (await mon_client.get("/api/monitoring/alerts", headers=mon_admin)).json()["alerts"]
    assert [a["id"] for a in alerts] == [alert["id"]]
    assert len(smtp_server.messages) == 1

    # Make the condition false: the alert resolves by itself, and says so.
    await mon_client.put(
        f"{RULES}/{rule_id}",
        json=rule(name="always", operator=">", threshold=1000, channels=["email", "webhook"]),
        headers=mon_admin,
    )
    resolved = await eventually(
        lambda: _alerts(mon_client, mon_admin, "resolved"), "the alert to resolve"
    )
    assert resolved[0]["id"] == alert["id"] and resolved[0]["resolved_by"] == "auto"
    await eventually(
        lambda: _ready(any(p["event"] == "alert.resolved" for p in webhook_receiver.posts)),
        "the resolved webhook",
    )
    assert await _alerts(mon_client, mon_admin, "active") == []


async def test_alert_waits_for_its_duration(
    mon_client: httpx.AsyncClient, mon_admin: dict[str, str]
) -> None:
    created = await mon_client.post(
        RULES, json=rule(name="held", operator=">=", threshold=0, duration=1), headers=mon_admin
    )
    rule_id = created.json()["rule"]["id"]
    [alert] = await eventually(lambda: _alerts(mon_client, mon_admin, "active"), "the alert")
    rules = (await mon_client.get(RULES, headers=mon_admin)).json()["rules"]
    pending_since = datetime.fromisoformat(rules[0]["pending_since"])
    fired_at = datetime.fromisoformat(alert["timestamp"])
    assert rules[0]["id"] == rule_id and rules[0]["fired"] is True
    assert (fired_at - pending_since).total_seconds() >= 1


async def test_resolved_by_hand_does_not_fire_again_while_the_condition_holds(
    mon_client: httpx.AsyncClient, mon_admin: dict[str, str]
) -> None:
    # No second app in this test (e.g. through `create_user`): in the scale-out run it could
    # take the sampler lease and sample every 10 s instead of every 0.2 s.
    await mon_client.post(
        RULES,
        json=rule(name="mem", metric="memory", operator=">", threshold=0),
        headers=mon_admin,
    )
    [alert] = await eventually(lambda: _alerts(mon_client, mon_admin, "active"), "the alert")
    resolved = await mon_client.post(
        f"/api/monitoring/alerts/{alert['id']}/resolve", headers=mon_admin
    )
    assert resolved.status_code == 200, resolved.text
    await eventually(
        lambda: _samples_after(mon_client, mon_admin, alert["timestamp"], 3), "three more samples"
    )
    alerts = (await mon_client.get("/api/monitoring/alerts", headers=mon_admin)).json()["alerts"]
    assert [(a["id"], a["status"], a["resolved_by"]) for a in alerts] == [
        (alert["id"], "resolved", "admin")
    ]
    assert "monitoring.alert.resolve" in await audit_actions(mon_client)
    # Deleting the rule keeps its alerts as history.
    deleted = await mon_client.delete(f"{RULES}/{alert['rule_id']}", headers=mon_admin)
    assert deleted.status_code == 200
    [kept] = (await mon_client.get("/api/monitoring/alerts", headers=mon_admin)).json()["alerts"]
    assert kept["id"] == alert["id"] and kept["rule_id"] is None
    bad = await mon_client.get(
        "/api/monitoring/alerts", params={"status": "sleeping"}, headers=mon_admin
    )
    assert bad.status_code == 422


async def test_failed_notifications_do_not_stop_sampling(make_client: Any) -> None:
    closed = free_port()
    client = await make_client(
        metrics_interval=0.2,
        smtp_host="127.0.0.1",
        smtp_port=closed,
        alert_email_to=["ops@example.com"],
        alert_webhook_url=f"http://127.0.0.1:{closed}/hook",
    )
    headers = {
        "Authorization": f"Bearer {(await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))['accessToken']}"
    }
    await client.post(
        RULES,
        json=rule(operator=">=", threshold=0, channels=["email", "webhook"]),
        headers=headers,
    )
    [alert] = await eventually(lambda: _alerts(client, headers, "active"), "the alert")
    await eventually(
        lambda: _samples_after(client, headers, alert["timestamp"], 3),
        "samples after the failed notifications",
    )


def _ready(value: bool) -> Awaitable[bool]:
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


async def _alerts(client: httpx.AsyncClient, headers: dict[str, str], status: str) -> Any:
    response = await client.get(
        "/api/monitoring/alerts", params={"status": status}, headers=headers
    )
    return response.json()["alerts"]


async def _samples_after(
    client: httpx.AsyncClient, headers: dict[str, str], moment: str, count: int
) -> bool:
    history = (await client.get("/api/monitoring/metrics", headers=headers)).json()["history"]
    return sum(1 for sample in history if sample["timestamp"] > moment) >= count


# ---- WebSocket against real server processes --------------------------------------------


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/ws/monitoring"


async def receive_samples(websocket: Any, count: int) -> list[dict[str, Any]]:
    messages = []
    while len(messages) < count:
        messages.append(json.loads(await asyncio.wait_for(websocket.recv(), 30)))
    return messages


@pytest.mark.multiprocess
async def test_websocket_streams_samples_and_alerts_from_every_process(
    settings_factory: Any, server_factory: Any
) -> None:
    settings = settings_factory()
    servers = [server_factory(settings, METRICS_INTERVAL="0.2") for _ in range(2)]
    async with httpx.AsyncClient(base_url=servers[0].base_url) as http:
        token = (await login(http, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
        headers = {"Authorization": f"Bearer {token}"}
        created = await http.post(
            RULES, json=rule(name="ws", operator=">=", threshold=0), headers=headers
        )
        assert created.status_code == 201, created.text
        key = await http.post("/api/v1/api-keys", json={"name": "ws"}, headers=headers)
        api_key = key.json()["data"]["key"]

    # Seed 002's own check, byte for byte (its key is 13 bytes, not the RFC's 16): the
    # handshake succeeds.
    host, port = servers[0].base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall(
            b"GET /ws/monitoring HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Key: SGVsbG8sIHdvcmxkIQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 101 ")

    # Unauthenticated, a bad token, or an API key in the URL (it would end up in proxy
    # logs): closed with 1008 (policy violation).
    base = ws_url(servers[0].base_url)
    for url in (base, base + "?access_token=x", base + f"?access_token={api_key}"):
        async with connect(url) as websocket:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(websocket.recv(), 30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    # One client per process: by query token on one, by header on the other.
    async with (
        connect(ws_url(servers[0].base_url) + f"?access_token={token}") as first,
        connect(ws_url(servers[1].base_url), additional_headers=headers) as second,
    ):
        for websocket in (first, second):
            messages = await receive_samples(websocket, 2)
            assert messages[0]["timestamp"] < messages[1]["timestamp"]
            for message in messages:
                assert message["type"] == "metrics"
                assert 0 <= message["system"]["cpu_usage"] <= 100
                assert message["system"]["timestamp"] == message["timestamp"]

            async def alert_arrives(websocket: Any = websocket) -> Any:
                message = json.loads(await asyncio.wait_for(websocket.recv(), 30))
                # (the scale-out run shares its database with earlier tests' alerts)
                return [a for a in message["alerts"] if a["rule_name"] == "ws"]

            [alert] = await eventually(alert_arrives, "the alert in a pushed message")
            assert alert["status"] == "active" and alert["rule_id"] == created.json()["rule"]["id"]


@pytest.mark.multiprocess
async def test_another_process_takes_over_sampling_when_the_sampler_dies(
    settings_factory: Any, server_factory: Any
) -> None:
    settings = settings_factory()
    servers = [server_factory(settings, METRICS_INTERVAL="0.2") for _ in range(2)]
    database = Database(settings)

    async def sampler_pid() -> int | None:
        async with database.session() as session:
            lease = await session.get(MonitorLease, "sampler")
            if lease is None or lease.expires_at < utcnow():
                return None
            return int(lease.owner.split(":")[1])

    try:
        pid = await eventually(sampler_pid, "a process holding the sampler lease")
        [sampler] = [s for s in servers if s.process.pid == pid]
        [survivor] = [s for s in servers if s is not sampler]
        sampler.stop(signal.SIGKILL)  # no chance to release the lease

        await eventually(
            lambda: _is(sampler_pid(), survivor.process.pid), "the survivor taking over"
        )
        async with httpx.AsyncClient(base_url=survivor.base_url) as http:
            token = (await login(http, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
        async with connect(ws_url(survivor.base_url) + f"?access_token={token}") as websocket:
            messages = await receive_samples(websocket, 2)
        assert messages[0]["timestamp"] < messages[1]["timestamp"]
    finally:
        await database.dispose()


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


@pytest.mark.multiprocess
async def test_websocket_sends_the_newest_sample_on_connect(
    settings_factory: Any, server_factory: Any
) -> None:
    """A dashboard that connects gets the newest sample at once, not a METRICS_INTERVAL
    later (an hour here: nothing else could arrive within the test)."""
    server = server_factory(settings_factory(), METRICS_INTERVAL="3600")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        token = (await login(http, ADMIN_EMAIL, ADMIN_PASSWORD))["accessToken"]
        headers = {"Authorization": f"Bearer {token}"}

        async def stored() -> Any:
            return (await http.get("/api/monitoring/metrics", headers=headers)).json()["history"]

        [sample] = await eventually(stored, "the sample taken at start")
        async with connect(ws_url(server.base_url) + f"?access_token={token}") as websocket:
            message = json.loads(await asyncio.wait_for(websocket.recv(), 5))
    assert message["type"] == "metrics"
    assert message["system"] == sample and message["timestamp"] == sample["timestamp"]
    assert isinstance(message["alerts"], list)
