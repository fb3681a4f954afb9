"""Issue certificates with ACME (RFC 8555) and HTTP-01 answered by the managed nginx.

While an order is validated, a managed file `vpsapi--acme-<name>.conf` holds a server
block on ACME_HTTP_PORT for the requested names that serves
`/.well-known/acme-challenge/` from ACME_WEBROOT (everything else answers 404). The file
name sorts before every site file, so for those few seconds this block wins over a site
with the same names on that port; it is removed (and nginx reloaded) as soon as the
order is finished or has failed. The `acme` library is synchronous (requests), so each
network step runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import josepy as jose
import structlog
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from vpsapi import __version__
from vpsapi.config import Settings
from vpsapi.core.errors import ServiceUnavailable, Unprocessable
from vpsapi.core.http import outbound_client
from vpsapi.ops.nginx.control import NginxControl
from vpsapi.ops.ssl import store
from vpsapi.ops.ssl.certs import CertificateInfo

log = structlog.get_logger(__name__)

Report = Callable[[int], Awaitable[None]]
CHALLENGE_PATH = ".well-known/acme-challenge"
FINALIZE_TIMEOUT = timedelta(seconds=120)
SELF_CHECK_ATTEMPTS = 100  # 0.1 s apart


class AcmeFailed(Unprocessable):
    code = "AcmeFailed"


@dataclass(frozen=True)
class Issued:
    domain: str
    names: list[str]
    info: CertificateInfo
    cert_path: Path
    key_path: Path


# `--` sorts before any site id, so nginx meets this server block first.
CHALLENGE_CONF_PREFIX = "vpsapi--acme-"


def challenge_conf_name(stem: str) -> str:
    return f"{CHALLENGE_CONF_PREFIX}{stem}.conf"


def render_challenge_server(settings: Settings, names: list[str]) -> str:
    webroot = str(settings.effective_acme_webroot.resolve())
    return (
        "# Managed by vpsapi while an ACME order is validated; removed when it is done.\n"
        "server {\n"
        f"    listen {settings.acme_http_port};\n"
        f"    server_name {' '.join(names)};\n"
        f"    location ^~ /{CHALLENGE_PATH}/ {{\n"
        f'        root "{webroot}";\n'
        "        default_type text/plain;\n"
        "        try_files $uri =404;\n"
        "    }\n"
        "    location / {\n"
        "        return 404;\n"
        "    }\n"
        "}\n"
    )


def _account_key(settings: Settings) -> jose.JWKRSA:
    """One account key per directory URL, kept in DATA_DIR/acme (0600)."""
    digest = hashlib.sha256(settings.acme_directory_url.encode()).hexdigest()[:16]
    path = settings.data_dir / "acme" / f"account-{digest}.json"
    if path.is_file():
        key = jose.JWKRSA.json_loads(path.read_text())
        assert isinstance(key, jose.JWKRSA)
        return key
    key = jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    store.write_atomic(path, key.json_dumps().encode(), 0o600)
    return key


def _connect(settings: Settings, email: str | None) -> client.ClientV2:
    key = _account_key(settings)
    # requests takes a CA bundle path where `verify_ssl` is documented as a bool.
    verify: Any = settings.acme_ca_bundle or True
    net = client.ClientNetwork(key, user_agent=f"vpsapi/{__version__}", verify_ssl=verify)
    directory = client.ClientV2.get_directory(settings.acme_directory_url, net)
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    try:
        acme.new_account(registration)
    except errors.ConflictError as existing:  # this key already has an account
        net.account = messages.RegistrationResource(
            uri=existing.location, body=messages.Registration()
        )
    return acme


def _http01(authz: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challenge in authz.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    raise AcmeFailed(f"the CA offers no HTTP-01 challenge for {authz.body.identifier.value}")


def _problem(exc: Exception) -> str:
    if isinstance(exc, errors.ValidationError):
        details = [
            f"{authz.body.identifier.value}: {challenge.error}"
            for authz in exc.failed_authzrs
            for challenge in authz.body.challenges
            if challenge.error is not None
        ]
        return "validation failed: " + "; ".join(details)
    return str(exc) or type(exc).__name__


async def issue(
    settings: Settings,
    nginx: NginxControl,
    names: list[str],
    email: str | None,
    report: Report,
) -> Issued:
    """Run one ACME order for `names` and store the result as `<names[0]>.crt/.key`."""
    stem = store.stem_for(names[0])
    webroot = settings.effective_acme_webroot / CHALLENGE_PATH
    conf_name = challenge_conf_name(stem)
    tokens: list[Path] = []
    await report(5)
    try:
        acme = await asyncio.to_thread(_connect, settings, email)
        await report(15)
        cert_key = ec.generate_private_key(ec.SECP256R1())
        key_pem = cert_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        order = await asyncio.to_thread(acme.new_order, crypto_util.make_csr(key_pem, names))
        await report(25)
        pending = [a for a in order.authorizations if a.body.status != messages.STATUS_VALID]
        answers = []
        for authz in pending:
            challenge = _http01(authz)
            response, validation = challenge.response_and_validation(acme.net.key)
            token = webroot / challenge.chall.encode("token")
            store.write_atomic(token, validation.encode(), 0o644)
            tokens.append(token)
            answers.append((challenge, response, validation))
        if answers:
            _make_readable(settings.effective_acme_webroot)
            await nginx.apply({conf_name: render_challenge_server(settings, names)})
            await _served(settings, names[0], tokens[0].name, answers[0][2])
        await report(40)
        for challenge, response, _ in answers:
            await asyncio.to_thread(acme.answer_challenge, challenge, response)
        await report(55)
        deadline = datetime.now() + FINALIZE_TIMEOUT  # the library compares naive local times
        order = await asyncio.to_thread(acme.poll_and_finalize, order, deadline)
        await report(85)
    except errors.Error as exc:
        raise AcmeFailed(f"ACME order for {', '.join(names)} failed: {_problem(exc)}") from exc
    except OSError as exc:  # requests' connection errors are OSErrors too
        raise ServiceUnavailable(
            f"ACME directory {settings.acme_directory_url} unreachable: {exc}"
        ) from exc
    finally:
        for token in tokens:
            token.unlink(missing_ok=True)
        if tokens:
            with contextlib.suppress(Exception):
                await nginx.apply({conf_name: None})
    stored = store.save_pair(
        settings,
        stem,
        order.fullchain_pem.encode(),
        key_pem,
        acme={
            "names": names,
            "email": email,
            "directory_url": settings.acme_directory_url,
            "issued_at": datetime.now(UTC).isoformat(),
        },
    )
    info, key_path = stored.info, stored.key_path
    assert info is not None and key_path is not None  # save_pair validated and wrote both
    await report(95)
    # Sites that use this certificate pick the new one up on reload.
    with contextlib.suppress(Exception):
        await nginx.reload()
    log.info("ops.ssl.issued", domain=stem, names=names, not_after=str(info.not_after))
    return Issued(stem, names, info, stored.cert_path, key_path)


async def _served(settings: Settings, name: str, token: str, expected: str) -> None:
    """Wait until nginx serves the challenge (a reload only signals its master; the new
    workers take over a moment later): asking the CA earlier fails the validation."""
    url = f"http://127.0.0.1:{settings.acme_http_port}/{CHALLENGE_PATH}/{token}"
    last = ""
    async with outbound_client(timeout=5, headers={"Host": name}) as http:
        for _ in range(SELF_CHECK_ATTEMPTS):
            try:
                response = await http.get(url)
                if response.status_code == 200 and response.text == expected:
                    return
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(0.1)
    raise AcmeFailed(f"nginx does not serve the ACME challenge at {url} ({last})")


def _make_readable(webroot: Path) -> None:
    """nginx's worker user must be able to read the challenge files."""
    for path in (webroot, webroot / ".well-known", webroot / CHALLENGE_PATH):
        path.chmod(0o755)
