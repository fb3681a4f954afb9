"""Push providers: FCM HTTP v1, APNs (token-based, HTTP/2) and a webhook.

Each `send` answers an `Outcome`, or raises `RetryLater` for transient trouble (the
job engine then retries with backoff). Tokens are deleted only on the providers'
explicit "this token is gone" answers (FCM `UNREGISTERED`, APNs 410, webhook 410), so a
misconfiguration can never wipe the users' tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt

from vpsapi.config import Settings
from vpsapi.core.http import KeptClient, outbound_client

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# APNs wants its provider token renewed after 20-60 minutes.
APNS_TOKEN_TTL = 50 * 60
_APNS_DEVICE_TOKEN = re.compile(r"^[0-9A-Fa-f]{16,200}$")


@dataclass(frozen=True)
class Notification:
    title: str
    body: str
    data: dict[str, str] = field(default_factory=dict)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    INVALID_TOKEN = "invalid_token"  # the provider says the token is gone: delete it
    REJECTED = "rejected"  # refused for good (bad request): retrying would not help


class RetryLater(Exception):
    """Transient failure (network, 429, 5xx): the delivery job is retried."""


class PushProvider(Protocol):
    name: str

    async def send(self, token: str, platform: str, note: Notification) -> Outcome: ...


def _transient(status: int) -> bool:
    return status in (408, 429) or status >= 500


async def _post(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise RetryLater(f"{type(exc).__name__}: {exc}") from exc


class WebhookProvider:
    """POSTs `{platform, token, notification: {title, body}, data}` to the operator's URL,
    signed with `X-Vpsapi-Signature: sha256=<hmac>` when a secret is set. 2xx delivered,
    410 token gone, 408/429/5xx retried, other answers rejected."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None) -> None:
        self.url = url
        self.secret = secret
        self.client = KeptClient(lambda: outbound_client(timeout=TIMEOUT))

    async def send(self, token: str, platform: str, note: Notification) -> Outcome:
        body = json.dumps(
            {
                "platform": platform,
                "token": token,
                "notification": {"title": note.title, "body": note.body},
                "data": note.data,
            },
            separators=(",", ":"),
        ).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "vpsapi-push"}
        if self.secret:
            digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Vpsapi-Signature"] = f"sha256={digest}"
        response = await _post(self.client.get(), self.url, content=body, headers=headers)
        if response.is_success:
            return Outcome.DELIVERED
        if response.status_code == 410:
            return Outcome.INVALID_TOKEN
        if _transient(response.status_code):
            raise RetryLater(f"webhook answered {response.status_code}")
        return Outcome.REJECTED


class FcmProvider:
    """FCM HTTP v1: a service-account JWT (RS256) is exchanged for an OAuth2 access
    token, cached until shortly before it expires, then `messages:send` per token."""

    name = "fcm"

    def __init__(self, service_account: dict[str, Any], project_id: str, base_url: str) -> None:
        self.client_email = str(service_account["client_email"])
        self.private_key = str(service_account["private_key"])
        self.private_key_id = service_account.get("private_key_id")
        self.token_uri = str(service_account.get("token_uri") or GOOGLE_TOKEN_URI)
        self.project_id = project_id or str(service_account["project_id"])
        self.send_url = f"{base_url.rstrip('/')}/v1/projects/{self.project_id}/messages:send"
        self._access_token: str | None = None
        self._access_expires = 0.0
        self.client = KeptClient(lambda: outbound_client(timeout=TIMEOUT))

    @classmethod
    def from_file(cls, path: Path, project_id: str, base_url: str) -> FcmProvider:
        return cls(json.loads(path.read_text()), project_id, base_url)

    def _assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.client_email,
            "scope": FCM_SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        }
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers=headers)

    async def _token(self, client: httpx.AsyncClient) -> str:
        if self._access_token and time.monotonic() < self._access_expires:
            return self._access_token
        response = await _post(
            client,
            self.token_uri,
            data={"grant_type": JWT_BEARER_GRANT, "assertion": self._assertion()},
        )
        if _transient(response.status_code):
            raise RetryLater(f"FCM token endpoint answered {response.status_code}")
        if not response.is_success:
            raise RuntimeError(f"FCM credentials refused ({response.status_code})")
        grant = response.json()
        self._access_token = str(grant["access_token"])
        self._access_expires = time.monotonic() + int(grant.get("expires_in", 3600)) - 60
        return self._access_token

    async def send(self, token: str, platform: str, note: Notification) -> Outcome:
        message = {
            "message": {
                "token": token,
                "notification": {"title": note.title, "body": note.body},
                "data": note.data,
                "android": {"priority": "HIGH"},
            }
        }
        client = self.client.get()
        access = await self._token(client)
        response = await _post(
            client, self.send_url, json=message, headers={"Authorization": f"Bearer {access}"}
        )
        if response.is_success:
            return Outcome.DELIVERED
        if response.status_code == 401:
            self._access_token = None  # revoked or expired early: fetch a new one
            raise RetryLater("FCM refused the access token")
        if _transient(response.status_code):
            raise RetryLater(f"FCM answered {response.status_code}")
        if "UNREGISTERED" in _fcm_error_codes(response):
            return Outcome.INVALID_TOKEN
        return Outcome.REJECTED


def _fcm_error_codes(response: httpx.Response) -> set[str]:
    """`error.status` and the FcmError `errorCode`s of an FCM v1 error answer."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return set()
    codes = {str(error.get("status", ""))}
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and "errorCode" in detail:
            codes.add(str(detail["errorCode"]))
    return codes


class ApnsProvider:
    """APNs with a token-based (.p8) key: an ES256 provider JWT, renewed every 50 min,
    and one HTTP/2 request per device token, multiplexed on one kept connection: Apple
    asks providers not to open and close connections repeatedly (APNs may take that for
    a denial-of-service attack)."""

    name = "apns"

    def __init__(self, key_pem: str, key_id: str, team_id: str, topic: str, base_url: str):
        self.key_pem = key_pem
        self.key_id = key_id
        self.team_id = team_id
        self.topic = topic
        self.base_url = base_url.rstrip("/")
        self._jwt: str | None = None
        self._jwt_made = 0.0
        # http1=False: HTTP/2 only (ALPN over TLS; prior knowledge on plain http).
        self.client = KeptClient(
            lambda: httpx.AsyncClient(http1=False, http2=True, timeout=TIMEOUT)
        )

    def provider_token(self) -> str:
        if self._jwt is None or time.monotonic() - self._jwt_made > APNS_TOKEN_TTL:
            self._jwt = jwt.encode(
                {"iss": self.team_id, "iat": int(time.time())},
                self.key_pem,
                algorithm="ES256",
                headers={"kid": self.key_id},
            )
            self._jwt_made = time.monotonic()
        return self._jwt

    def request(self, token: str, note: Notification) -> httpx.Request:
        payload = {
            "aps": {"alert": {"title": note.title, "body": note.body}, "sound": "default"},
            **note.data,
        }
        return httpx.Request(
            "POST",
            f"{self.base_url}/3/device/{token}",
            json=payload,
            headers={
                "authorization": f"bearer {self.provider_token()}",
                "apns-topic": self.topic,
                "apns-push-type": "alert",
                "apns-priority": "10",
            },
        )

    async def send(self, token: str, platform: str, note: Notification) -> Outcome:
        if not _APNS_DEVICE_TOKEN.match(token):
            return Outcome.INVALID_TOKEN  # not an APNs device token at all
        try:
            response = await self.client.get().send(self.request(token, note))
        except httpx.HTTPError as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return Outcome.DELIVERED
        if response.status_code == 410:
            return Outcome.INVALID_TOKEN
        if response.status_code == 403 and "ExpiredProviderToken" in response.text:
            self._jwt = None
            raise RetryLater("APNs provider token expired")
        if _transient(response.status_code):
            raise RetryLater(f"APNs answered {response.status_code}")
        return Outcome.REJECTED


@dataclass
class PushProviders:
    fcm: FcmProvider | None = None
    apns: ApnsProvider | None = None
    webhook: WebhookProvider | None = None

    async def aclose(self) -> None:
        for provider in (self.fcm, self.apns, self.webhook):
            if provider is not None:
                await provider.client.aclose()

    def for_platform(self, platform: str) -> PushProvider | None:
        """The platform's own provider when configured, else the webhook (if any)."""
        native: PushProvider | None = {"fcm": self.fcm, "apns": self.apns}.get(platform)
        return native or self.webhook


def build_providers(settings: Settings) -> PushProviders:
    providers = PushProviders()
    if settings.push_webhook_url:
        secret = settings.push_webhook_secret
        providers.webhook = WebhookProvider(
            settings.push_webhook_url, secret.get_secret_value() if secret else None
        )
    if settings.fcm_credentials_file is not None:
        providers.fcm = FcmProvider.from_file(
            settings.fcm_credentials_file, settings.fcm_project_id, settings.fcm_base_url
        )
    if settings.apns_key_file is not None:
        providers.apns = ApnsProvider(
            settings.apns_key_file.read_text(),
            settings.apns_key_id,
            settings.apns_team_id,
            settings.apns_topic,
            settings.apns_base_url,
        )
    return providers


_built: dict[int, tuple[Settings, PushProviders]] = {}


def providers_for(settings: Settings) -> PushProviders:
    """One set per settings object, so cached access tokens are reused."""
    cached = _built.get(id(settings))
    if cached is None or cached[0] is not settings:
        cached = _built[id(settings)] = (settings, build_providers(settings))
    return cached[1]
