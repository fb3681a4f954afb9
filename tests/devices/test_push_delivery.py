"""Alarm events → push delivery jobs → real local receivers: a webhook, a fake FCM
(OAuth2 token endpoint + v1 `messages:send` wire format) and a fake APNs over HTTP/2
(hypercorn, h2c). Tokens reported gone are deleted; transient errors are retried."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from support import free_port
from vpsapi.devices.models import PushToken

WEBHOOK_SECRET = "webhook-signing-secret"
FCM_PROJECT = "cams-test"
APNS_TOPIC = "com.example.cams"
APNS_TEAM = "TEAM123456"
APNS_KEY_ID = "KEY1234567"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[Received], tuple[int, dict[str, Any]]]


class HttpReceiver:
    """A real HTTP/1.1 server in a thread that records requests and answers through
    `respond`."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.received: list[Received] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                receiver.received.append(request)
                status, body = receiver.respond(request)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


# ---- webhook ------------------------------------------------------------------------


@dataclass
class Webhook:
    receiver: HttpReceiver
    # token -> statuses to answer in turn (then 200)
    script: dict[str, list[int]] = field(default_factory=dict)

    def for_token(self, token: str) -> list[dict[str, Any]]:
        return [r.json() for r in self.receiver.received if r.json()["token"] == token]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook(HttpReceiver(lambda request: (200, {})))

    def respond(request: Received) -> tuple[int, dict[str, Any]]:
        statuses = hook.script.get(request.json()["token"], [])
        return (statuses.pop(0) if statuses else 200), {}

    hook.receiver.respond = respond
    yield hook
    hook.receiver.close()


# ---- fake FCM -----------------------------------------------------------------------


@dataclass
class FakeFcm:
    receiver: HttpReceiver
    public_key: Any
    dead_tokens: set[str] = field(default_factory=set)
    issued: set[str] = field(default_factory=set)

    def messages(self) -> list[dict[str, Any]]:
        return [r.json()["message"] for r in self.receiver.received if r.path.endswith(":send")]

    def respond(self, request: Received) -> tuple[int, dict[str, Any]]:
        if request.path == "/token":
            form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
            claims = jwt.decode(
                form["assertion"],
                self.public_key,
                algorithms=["RS256"],
                audience=f"{self.receiver.url}/token",
            )
            assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
            token = "ya29." + secrets.token_urlsafe(16)
            self.issued.add(token)
            return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        if request.path != f"/v1/projects/{FCM_PROJECT}/messages:send":
            return 404, {"error": {"code": 404, "status": "NOT_FOUND"}}
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.issued:
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        message = request.json()["message"]
        if message["token"] in self.dead_tokens:
            return 404, {
                "error": {
                    "code": 404,
                    "message": "Requested entity was not found.",
                    "status": "NOT_FOUND",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                            "errorCode": "UNREGISTERED",
                        }
                    ],
                }
            }
        return 200, {"name": f"projects/{FCM_PROJECT}/messages/0:{secrets.token_hex(8)}"}


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeFcm, Path]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake = FakeFcm(HttpReceiver(lambda request: (500, {})), key.public_key())
    fake.receiver.respond = fake.respond
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": FCM_PROJECT,
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": f"push@{FCM_PROJECT}.iam.gserviceaccount.com",
        "token_uri": f"{fake.receiver.url}/token",
    }
    path = tmp_path_factory.mktemp("fcm") / "service-account.json"
    path.write_text(json.dumps(account))
    yield fake, path
    fake.receiver.close()


# ---- fake APNs over HTTP/2 ----------------------------------------------------------


@dataclass
class FakeApns:
    public_key: Any
    url: str = ""
    dead_tokens: set[str] = field(default_factory=set)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        token = scope["path"].removeprefix("/3/device/")
        claims = jwt.decode(
            headers["authorization"].removeprefix("bearer "), self.public_key, algorithms=["ES256"]
        )
        assert claims["iss"] == APNS_TEAM
        assert jwt.get_unverified_header(headers["authorization"][7:])["kid"] == APNS_KEY_ID
        self.received.append(
            {
                "http_version": scope["http_version"],
                "connection": tuple(scope["client"]),
                "token": token,
                "topic": headers.get("apns-topic"),
                "push_type": headers.get("apns-push-type"),
                "payload": json.loads(body),
            }
        )
        if token in self.dead_tokens:
            status, answer = 410, {"reason": "Unregistered", "timestamp": int(time.time() * 1000)}
        else:
            status, answer = 200, {}
        payload = json.dumps(answer).encode() if answer else b""
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"apns-id", secrets.token_hex(8).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def apns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeApns, Path]]:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path_factory.mktemp("apns") / "AuthKey.p8"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fake = FakeApns(key.public_key())
    port = free_port()
    fake.url = f"http://127.0.0.1:{port}"
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=lambda: loop.run_until_complete(serve(fake, config, shutdown_trigger=stop.wait)),
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    yield fake, path
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


# ---- the app under test -------------------------------------------------------------


@pytest.fixture
async def client(
    make_client: Any, webhook: Webhook, fcm: tuple[FakeFcm, Path], apns: tuple[FakeApns, Path]
) -> AsyncIterator[httpx.AsyncClient]:
    """Every provider configured: fcm tokens → fake FCM, apns → fake APNs, webhook tokens
    → the webhook receiver. Workers run in this process."""
    app_client: httpx.AsyncClient = await make_client(
        jobs_inprocess_workers=True,
        job_backoff_base_seconds=0.05,
        push_webhook_url=f"{webhook.receiver.url}/push",
        push_webhook_secret=WEBHOOK_SECRET,
        fcm_credentials_file=fcm[1],
        fcm_base_url=fcm[0].receiver.url,
        apns_key_file=apns[1],
        apns_key_id=APNS_KEY_ID,
        apns_team_id=APNS_TEAM,
        apns_topic=APNS_TOPIC,
        apns_base_url=apns[0].url,
    )
    yield app_client


async def camera_of(client: httpx.AsyncClient, user: dict[str, Any], auth: dict[str, str]) -> str:
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": user["id"]}
    vid = str((await client.post("/api/hello/register", json=body)).json()["virtualId"])
    bound = await client.post("/api/devices", json={"vid": vid, "name": "Porch"}, headers=auth)
    assert bound.status_code == 201, bound.text
    return vid


async def push_jobs_done(client: httpx.AsyncClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    """Wait until every push job is finished (a retry may wait for the jobs sweeper)."""
    for _ in range(600):
        response = await client.get("/api/jobs", params={"type": "push"}, headers=admin)
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        if jobs and all(job["status"] in ("COMPLETED", "FAILED") for job in jobs):
            return jobs
        await asyncio.sleep(0.1)
    raise AssertionError(f"push jobs did not finish: {jobs}")


async def stored_tokens(client: httpx.AsyncClient) -> set[str]:
    async with client._transport.app.state.db.session() as session:  # type: ignore[attr-defined]
        return set((await session.execute(select(PushToken.token))).scalars())


async def test_alarm_reaches_the_owners_webhook(
    client: httpx.AsyncClient, create_user: Any, admin_headers: dict[str, str], webhook: Webhook
) -> None:
    alice, alice_auth = await create_user()
    _, bob_auth = await create_user()
    vid = await camera_of(client, alice, alice_auth)
    alice_token, bob_token = f"hook-{secrets.token_hex(6)}", f"hook-{secrets.token_hex(6)}"
    for token, auth in ((alice_token, alice_auth), (bob_token, bob_auth)):
        saved = await client.post(
            "/api/push/tokens", json={"token": token, "platform": "webhook"}, headers=auth
        )
        assert saved.status_code == 204

    event = await client.post(
        f"/api/devices/{vid}/events", json={"alarmType": "motion", "time": 1714557600}
    )
    assert event.status_code == 202, event.text
    assert event.json() == {"success": True, "notifications": 1}
    [job] = await push_jobs_done(client, admin_headers)
    assert job["status"] == "COMPLETED"
    assert job["result"]["results"][0]["outcome"] == "delivered"

    [delivered] = webhook.for_token(alice_token)
    assert delivered == {
        "platform": "webhook",
        "token": alice_token,
        "notification": {"title": "Porch", "body": "Motion detected"},
        "data": {"vid": vid, "alarmType": "motion", "time": "2024-05-01T10:00:00.000Z"},
    }
    assert webhook.for_token(bob_token) == []  # not an owner
    request = next(r for r in webhook.receiver.received if r.json()["token"] == alice_token)
    expected = hmac.new(WEBHOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-vpsapi-signature"] == f"sha256={expected}"


async def test_webhook_retries_and_drops_gone_tokens(
    client: httpx.AsyncClient, create_user: Any, admin_headers: dict[str, str], webhook: Webhook
) -> None:
    alice, auth = await create_user()
    vid = await camera_of(client, alice, auth)
    flaky, gone = f"flaky-{secrets.token_hex(6)}", f"gone-{secrets.token_hex(6)}"
    webhook.script[flaky] = [503]
    webhook.script[gone] = [410]
    for token in (flaky, gone):
        body = {"token": token, "platform": "webhook"}
        assert (await client.post("/api/push/tokens", json=body, headers=auth)).status_code == 204

    event = await client.post(f"/api/devices/{vid}/events", json={"alarmType": "human"})
    assert event.json()["notifications"] == 2
    jobs = await push_jobs_done(client, admin_headers)
    outcomes = {job["result"]["results"][0]["outcome"]: job for job in jobs}
    assert outcomes["delivered"]["attempts"] == 2  # the 503 was retried
    assert outcomes["invalid_token"]["attempts"] == 1
    assert len(webhook.for_token(flaky)) == 2
    assert webhook.for_token(flaky)[-1]["notification"]["body"] == "Person detected"
    remaining = await stored_tokens(client)
    assert flaky in remaining
    assert gone not in remaining


async def test_fcm_delivery_and_unregistered_token_deleted(
    client: httpx.AsyncClient,
    create_user: Any,
    admin_headers: dict[str, str],
    fcm: tuple[FakeFcm, Path],
) -> None:
    fake = fcm[0]
    alice, auth = await create_user()
    vid = await camera_of(client, alice, auth)
    alive, dead = f"fcm-alive-{secrets.token_hex(6)}", f"fcm-dead-{secrets.token_hex(6)}"
    fake.dead_tokens.add(dead)
    for token in (alive, dead):
        # The seed's body shape: {deviceType: android} means FCM.
        body = {"deviceType": "android", "token": token}
        assert (await client.post("/api/push/tokens", json=body, headers=auth)).status_code == 204

    event = await client.post(
        f"/api/devices/{vid}/events", json={"alarmType": "pir", "videoId": "clip42"}
    )
    assert event.json()["notifications"] == 2
    jobs = await push_jobs_done(client, admin_headers)
    assert sorted(job["result"]["results"][0]["outcome"] for job in jobs) == [
        "delivered",
        "invalid_token",
    ]
    [message] = [m for m in fake.messages() if m["token"] == alive]
    assert message["notification"] == {"title": "Porch", "body": "Movement detected (PIR sensor)"}
    assert message["data"]["vid"] == vid
    assert message["data"]["videoId"] == "clip42"
    assert message["android"] == {"priority": "HIGH"}
    remaining = await stored_tokens(client)
    assert alive in remaining
    assert dead not in remaining


async def test_apns_over_http2_and_gone_token_deleted(
    client: httpx.AsyncClient,
    create_user: Any,
    admin_headers: dict[str, str],
    apns: tuple[FakeApns, Path],
) -> None:
    fake = apns[0]
    alice, auth = await create_user()
    vid = await camera_of(client, alice, auth)
    alive, dead = secrets.token_hex(32), secrets.token_hex(32)
    fake.dead_tokens.add(dead)
    # The second in the seed's column name (`device_type`): an iOS token all the same.
    for token, name in ((alive, "deviceType"), (dead, "device_type")):
        body = {name: "ios", "token": token}
        assert (await client.post("/api/push/tokens", json=body, headers=auth)).status_code == 204

    event = await client.post(f"/api/devices/{vid}/events", json={"alarmType": "doorbell"})
    assert event.json()["notifications"] == 2
    await push_jobs_done(client, admin_headers)
    [sent] = [r for r in fake.received if r["token"] == alive]
    assert sent["http_version"] == "2"
    assert sent["topic"] == APNS_TOPIC
    assert sent["push_type"] == "alert"
    assert sent["payload"]["aps"]["alert"] == {
        "title": "Porch",
        "body": "Someone rang the doorbell",
    }
    assert sent["payload"]["vid"] == vid
    remaining = await stored_tokens(client)
    assert alive in remaining
    assert dead not in remaining

    # A second alarm reuses the provider's connection instead of opening one per push.
    await client.post(f"/api/devices/{vid}/events", json={"alarmType": "doorbell"})
    await push_jobs_done(client, admin_headers)
    to_alive = [r for r in fake.received if r["token"] == alive]
    assert len(to_alive) == 2
    assert len({r["connection"] for r in fake.received if r["token"] in (alive, dead)}) == 1


async def test_event_bad_input(client: httpx.AsyncClient, create_user: Any) -> None:
    alice, auth = await create_user()
    vid = await camera_of(client, alice, auth)
    for body in (
        {},
        {"alarmType": ""},
        {"alarmType": "motion!"},
        {"alarmType": "x" * 33},
        {"alarmType": "motion", "time": "later"},
        # Valid ISO-8601, but past year 9999 / before year 1 once in UTC.
        {"alarmType": "motion", "time": "9999-12-31T23:59:59-01:00"},
        {"alarmType": "motion", "time": "0001-01-01T00:00:00+05:00"},
        {"alarmType": "motion", "videoId": "v" * 33},
    ):
        response = await client.post(f"/api/devices/{vid}/events", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]
    unknown = await client.post("/api/devices/VENOSUCHDEVICE1/events", json={"alarmType": "motion"})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "Device not found"
    # A device without owners (or owners without tokens) notifies nobody.
    assert (
        await client.post(f"/api/devices/{vid}/events", json={"alarmType": "motion"})
    ).json() == {
        "success": True,
        "notifications": 0,
    }


async def test_push_token_body_shapes(client: httpx.AsyncClient, create_user: Any) -> None:
    _, auth = await create_user()
    for bad in (
        {"deviceType": "windows", "token": "t"},
        {"deviceType": "ios"},
        {"deviceType": "ios", "token": ""},
        {"platform": "sms", "token": "t"},
    ):
        response = await client.post("/api/push/tokens", json=bad, headers=auth)
        assert response.status_code == 400, bad
    body = {"deviceType": "ios", "token": "seed-shaped-token"}
    assert (await client.post("/api/push/tokens", json=body, headers=auth)).status_code == 204
    async with client._transport.app.state.db.session() as session:  # type: ignore[attr-defined]
        platform = await session.scalar(
            select(PushToken.platform).where(PushToken.token == "seed-shaped-token")
        )
    assert platform == "apns"
    deleted = await client.request("DELETE", "/api/push/tokens", json=body, headers=auth)
    assert deleted.status_code == 204


async def test_camera_event_needs_device_token_when_set(make_client: Any) -> None:
    client = await make_client(device_api_token="fleet-token")
    body = {"realDeviceId": "REAL" + secrets.token_hex(8).upper(), "userId": "u1"}
    headers = {"X-Device-Token": "fleet-token"}
    vid = (await client.post("/api/hello/register", json=body, headers=headers)).json()["virtualId"]
    event = {"alarmType": "motion"}
    assert (await client.post(f"/api/devices/{vid}/events", json=event)).status_code == 401
    accepted = await client.post(f"/api/devices/{vid}/events", json=event, headers=headers)
    assert accepted.status_code == 202
