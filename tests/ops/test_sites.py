"""nginx sites through the API against a private real nginx: a created site really proxies,
a broken one is refused with nginx's words and changes nothing, injections never pass."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ops_support import NamedBackend, PrivateNginx, site_body, through_nginx
from support import free_port
from vpsapi.ops.audit.models import AuditEntry
from vpsapi.ops.nginx.models import NginxSite


async def test_created_site_proxies_to_its_backend(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    port = free_port()
    body = site_body("example-app", port, f"http://{backends[0].address}")
    response = await ops_client.post("/api/configs", json=body, headers=ops_admin)
    assert response.status_code == 201, response.text
    site = response.json()
    assert site["id"] == "example-app" and site["is_active"] is True
    assert (private_nginx.conf_dir / "vpsapi-site-example-app.conf").is_file()

    assert through_nginx(port).text == "backend one"

    listed = (await ops_client.get("/api/configs", headers=ops_admin)).json()
    assert [item["id"] for item in listed] == ["example-app"]
    got = await ops_client.get("/api/configs/example-app", headers=ops_admin)
    assert got.json()["locations"][0]["backend"] == f"http://{backends[0].address}"

    # The audit trail names who did it and what.
    async with ops_client.app.state.db.session() as session:  # type: ignore[attr-defined]
        entries = (await session.scalars(select(AuditEntry))).all()
    assert [(e.action, e.target, e.actor) for e in entries] == [
        ("nginx.site.create", "example-app", "admin")
    ]


async def test_seed_body_with_host_port_backend(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], backends: list[NamedBackend]
) -> None:
    port = free_port()
    response = await ops_client.post(
        "/api/configs", json=site_body("plain", port, backends[1].address), headers=ops_admin
    )
    assert response.status_code == 201, response.text
    assert through_nginx(port).text == "backend two"


async def test_update_toggle_and_delete(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    port = free_port()
    body = site_body("app", port, backends[0].address)
    assert (await ops_client.post("/api/configs", json=body, headers=ops_admin)).status_code == 201

    body["locations"][0]["backend"] = backends[1].address
    updated = await ops_client.put("/api/configs/app", json=body, headers=ops_admin)
    assert updated.status_code == 200, updated.text
    assert through_nginx(port).text == "backend two"

    toggled = await ops_client.post("/api/configs/app/toggle", headers=ops_admin)
    assert toggled.status_code == 200 and toggled.json()["is_active"] is False
    assert not (private_nginx.conf_dir / "vpsapi-site-app.conf").exists()
    with pytest.raises(httpx.ConnectError):
        through_nginx(port)

    toggled = await ops_client.post("/api/configs/app/toggle", headers=ops_admin)
    assert toggled.json()["is_active"] is True
    assert through_nginx(port).text == "backend two"

    deleted = await ops_client.delete("/api/configs/app", headers=ops_admin)
    assert deleted.status_code == 200
    assert (await ops_client.get("/api/configs/app", headers=ops_admin)).status_code == 404
    assert not (private_nginx.conf_dir / "vpsapi-site-app.conf").exists()


async def test_config_nginx_rejects_is_refused_and_changes_nothing(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    good_port = free_port()
    good = site_body("good", good_port, backends[0].address)
    assert (await ops_client.post("/api/configs", json=good, headers=ops_admin)).status_code == 201
    before = private_nginx.conf_dir.joinpath("vpsapi-site-good.conf").read_text()

    # Valid to our schema, but nginx cannot load the certificate: the real `nginx -t` says so.
    broken = site_body(
        "broken",
        free_port(),
        backends[1].address,
        ssl_cert="/nonexistent/cert.pem",
        ssl_key="/nonexistent/key.pem",
    )
    response = await ops_client.post("/api/configs", json=broken, headers=ops_admin)
    assert response.status_code == 422, response.text
    body = response.json()
    assert "/nonexistent/cert.pem" in body["detail"]
    assert "nginx_output" in body

    # The same site made invalid through an update is refused too, and the good one stays.
    good["ssl_cert"], good["ssl_key"] = "/nonexistent/cert.pem", "/nonexistent/key.pem"
    response = await ops_client.put("/api/configs/good", json=good, headers=ops_admin)
    assert response.status_code == 422
    assert private_nginx.conf_dir.joinpath("vpsapi-site-good.conf").read_text() == before
    assert not (private_nginx.conf_dir / "vpsapi-site-broken.conf").exists()
    listed = (await ops_client.get("/api/configs", headers=ops_admin)).json()
    assert [item["id"] for item in listed] == ["good"]
    assert listed[0]["ssl_cert"] is None
    assert through_nginx(good_port).text == "backend one"


async def test_a_port_nginx_cannot_listen_on_is_refused_and_changes_nothing(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    """`nginx -t` does not bind ports: a site on a port another process holds passes it,
    and the reload then keeps the old configuration. That is refused with nginx's words."""
    good_port = free_port()
    good = site_body("good", good_port, backends[0].address)
    assert (await ops_client.post("/api/configs", json=good, headers=ops_admin)).status_code == 201
    with socket.socket() as holder:
        taken = free_port()
        holder.bind(("0.0.0.0", taken))
        holder.listen()
        clash = site_body("clash", taken, backends[1].address)
        response = await ops_client.post("/api/configs", json=clash, headers=ops_admin)
    assert response.status_code == 422, response.text
    body = response.json()
    assert "nginx kept its previous configuration" in body["detail"]
    assert "Address already in use" in body["nginx_output"]
    assert not (private_nginx.conf_dir / "vpsapi-site-clash.conf").exists()
    listed = (await ops_client.get("/api/configs", headers=ops_admin)).json()
    assert [item["id"] for item in listed] == ["good"]
    assert through_nginx(good_port).text == "backend one"


async def test_validate_and_test_run_the_real_nginx(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    ops_user: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    body = site_body("candidate", free_port(), backends[0].address)
    # nginx would read the files a body names with the server's rights: admins only.
    probe = {**body, "ssl_cert": "/etc/shadow", "ssl_key": "/etc/shadow"}
    refused = await ops_client.post("/api/configs/validate", json=probe, headers=ops_user)
    assert refused.status_code == 403
    response = await ops_client.post("/api/configs/validate", json=body, headers=ops_admin)
    assert response.status_code == 200, response.text
    assert response.json()["valid"] is True
    assert "proxy_pass http://" in response.json()["config_preview"]
    assert not (private_nginx.conf_dir / "vpsapi-site-candidate.conf").exists()

    body.update(ssl_cert="/nonexistent/c.pem", ssl_key="/nonexistent/k.pem")
    response = await ops_client.post("/api/configs/validate", json=body, headers=ops_admin)
    assert response.status_code == 422
    assert response.json()["valid"] is False and "/nonexistent/c.pem" in response.json()["output"]

    body = site_body("stored", free_port(), backends[0].address)
    await ops_client.post("/api/configs", json=body, headers=ops_admin)
    tested = await ops_client.post("/api/configs/stored/test", headers=ops_admin)
    assert tested.status_code == 200 and tested.json()["success"] is True
    form = await ops_client.get("/api/configs/stored/form", headers=ops_admin)
    assert form.status_code == 200
    assert form.json()["listen_port"] == body["listen_port"] and "form_schema" in form.json()
    assert (await ops_client.post("/api/configs/nope/test", headers=ops_admin)).status_code == 404


async def test_site_metrics_come_from_its_access_log(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], backends: list[NamedBackend]
) -> None:
    port = free_port()
    body = site_body("measured", port, backends[0].address)
    assert (await ops_client.post("/api/configs", json=body, headers=ops_admin)).status_code == 201
    for _ in range(3):
        assert through_nginx(port).status_code == 200
    metrics = await ops_client.get("/api/configs/measured/metrics", headers=ops_admin)
    assert metrics.status_code == 200, metrics.text
    data = metrics.json()
    assert data["total_requests"] == 3
    assert data["status_classes"]["2xx"] == 3
    assert data["requests_by_method"] == {"GET": 3}
    assert data["bytes_sent"] == 3 * len("backend one")


INJECTIONS = [
    {"server_name": "example.com; include /etc/passwd"},
    {"server_name": "a.com\nlisten 1"},
    {"server_name": "a{b}.com"},
    {"id": "../etc"},
    {"locations": [{"path": "/x { return 200; }", "backend": "127.0.0.1:1"}]},
    {"locations": [{"path": "/../", "backend": "127.0.0.1:1"}]},
    {"locations": [{"path": "/", "backend": "http://127.0.0.1:1;evil"}]},
    {"locations": [{"path": "/", "backend": "http://a.com/x y"}]},
    {"locations": [{"path": "/", "backend": "127.0.0.1:99999"}]},
    {"locations": [{"path": "/", "backend": "127.0.0.1:1", "custom_headers": {"X": 'a"; b'}}]},
    {"locations": [{"path": "/", "backend": "127.0.0.1:1", "custom_headers": {"X Y": "a"}}]},
    # An unpaired surrogate cannot be written to the site's file (it was a 500).
    {"locations": [{"path": "/", "backend": "127.0.0.1:1", "custom_headers": {"X": "\ud800"}}]},
    {"locations": [{"path": "/", "backend": "127.0.0.1:1", "client_max_body_size": "1m;"}]},
    {"locations": [{"path": "/", "root": "/var/www; deny all"}]},
    {"locations": [{"path": "/", "root": "/var/../etc"}]},
    {"ssl_cert": "/tmp/../etc/shadow", "ssl_key": "/tmp/k.pem"},
    {"locations": [{"path": "/"}]},
    {"locations": []},
    {"listen_port": 70000},
    {"ssl_cert": "/etc/c.pem"},
    {"rate_limit_global": "10r/s;"},
]


@pytest.mark.parametrize("change", INJECTIONS)
async def test_injections_and_bad_input_are_refused(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    change: dict[str, Any],
) -> None:
    body = {**site_body("victim", free_port(), "127.0.0.1:9"), **change}
    # Encoded as ASCII (JSON escapes), so that a lone surrogate can be sent at all.
    response = await ops_client.post(
        "/api/configs",
        content=json.dumps(body),
        headers={**ops_admin, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list)
    assert list(private_nginx.conf_dir.glob("vpsapi-*")) == []
    assert (await ops_client.get("/api/configs", headers=ops_admin)).json() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"listen_port": True}, "listen_port"),
        ({"is_active": "yes"}, "is_active"),
        ({"gzip_enabled": 1}, "gzip_enabled"),
        (
            {"locations": [{"path": "/", "backend": "127.0.0.1:9", "read_timeout": False}]},
            "locations.0.read_timeout",
        ),
        (
            {"locations": [{"path": "/", "backend": "127.0.0.1:9", "websocket": "on"}]},
            "locations.0.websocket",
        ),
        (
            {"upstream": {"name": "up", "servers": ["127.0.0.1:9"], "health_check": "yes"}},
            "upstream.health_check",
        ),
    ],
)
async def test_a_boolean_as_a_number_or_text_as_a_boolean_is_refused(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    change: dict[str, Any],
    field: str,
) -> None:
    """`listen_port: true` was port 1 (`listen 1;` in the site's file), "yes" was true:
    pydantic's lax mode. As CityPulse, a create, an update and a check refuse them."""
    body = site_body("typed", free_port(), "127.0.0.1:9")
    assert (await ops_client.post("/api/configs", json=body, headers=ops_admin)).status_code == 201
    written = (private_nginx.conf_dir / "vpsapi-site-typed.conf").read_text()
    for method, path in (
        ("POST", "/api/configs"),
        ("PUT", "/api/configs/typed"),
        ("POST", "/api/configs/validate"),
    ):
        bad = {**body, "id": "other" if method == "POST" else "typed", **change}
        response = await ops_client.request(method, path, json=bad, headers=ops_admin)
        assert response.status_code == 422, (method, path, response.text)
        locations = [[str(part) for part in item["loc"]] for item in response.json()["detail"]]
        assert locations == [["body", *field.split(".")]]
    assert (private_nginx.conf_dir / "vpsapi-site-typed.conf").read_text() == written
    assert [
        site["id"] for site in (await ops_client.get("/api/configs", headers=ops_admin)).json()
    ] == ["typed"]


async def test_a_number_sent_as_text_is_still_read(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], private_nginx: PrivateNginx
) -> None:
    port = free_port()
    body = site_body("texty", port, "127.0.0.1:9", listen_port=str(port))
    response = await ops_client.post("/api/configs", json=body, headers=ops_admin)
    assert response.status_code == 201, response.text
    assert response.json()["listen_port"] == port


async def store_site_as_before(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any],
    locations: list[dict[str, Any]],
) -> None:
    """A site created from `body`, then its row given `locations` that today's rules
    refuse on the way in, as a row saved before a rule came would hold them."""
    assert (await client.post("/api/configs", json=body, headers=headers)).status_code == 201
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        site = await session.get(NginxSite, body["id"])
        site.locations = locations


async def test_a_site_stored_before_a_rule_still_reads(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    """A row saved when `..` was still taken lists and reads (it was a 500); a change to
    it is checked by today's rules."""
    body = site_body("older", free_port(), backends[0].address)
    await store_site_as_before(
        ops_client, ops_admin, body, [{"path": "/", "root": "/var/www/../html"}]
    )
    listed = await ops_client.get("/api/configs", headers=ops_admin)
    assert listed.status_code == 200, listed.text
    assert listed.json()[0]["locations"][0]["root"] == "/var/www/../html"
    assert (await ops_client.get("/api/configs/older", headers=ops_admin)).status_code == 200
    changed = {**body, "locations": [{"path": "/", "root": "/var/www/../html"}]}
    refused = await ops_client.put("/api/configs/older", json=changed, headers=ops_admin)
    assert refused.status_code == 422, refused.text


@pytest.mark.parametrize(
    ("field", "address"),
    [
        ("locations.0.backend", "http://256.0.0.1:80"),
        ("locations.0.backend", "http://xn--zz/"),
        ("locations.0.backend", "999.1.1.1:8080"),
        ("upstream.servers.0", "1.2.3.999:80"),
    ],
)
async def test_a_backend_no_client_can_ask_is_refused_even_on_an_inactive_site(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    backends: list[NamedBackend],
    field: str,
    address: str,
) -> None:
    """An inactive site is not tested by nginx; its backends' health checks would ask
    those hosts (and were a 500 on every refresh)."""
    if field.startswith("upstream"):
        body = site_body(
            "unaskable",
            free_port(),
            "inline",
            is_active=False,
            upstream={"name": "inline", "servers": [address]},
        )
    else:
        body = site_body("unaskable", free_port(), address, is_active=False)
    response = await ops_client.post("/api/configs", json=body, headers=ops_admin)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", *field.split(".")]
    assert error["msg"] == f"{address!r} names no valid host name or IP address"
    assert (await ops_client.get("/api/configs", headers=ops_admin)).json() == []


async def test_a_site_stored_with_a_host_no_client_can_ask_still_reads_and_checks(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    backends: list[NamedBackend],
) -> None:
    """A row saved before the rule lists, and refreshing its backends' health reports the
    host as unhealthy (it was a 500)."""
    body = site_body("older-host", free_port(), backends[0].address, is_active=False)
    await store_site_as_before(
        ops_client, ops_admin, body, [{"path": "/", "backend": "http://256.0.0.1:80"}]
    )
    listed = await ops_client.get("/api/configs", headers=ops_admin)
    assert listed.status_code == 200, listed.text
    report = await ops_client.get("/api/health/backends?refresh=true", headers=ops_admin)
    assert report.status_code == 200, report.text
    checked = report.json()["backends"]["http://256.0.0.1:80"]
    assert checked["healthy"] is False and "IPv4" in checked["error"]


async def test_unknown_pool_duplicate_id_and_missing_site(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], backends: list[NamedBackend]
) -> None:
    body = site_body("dup", free_port(), backends[0].address)
    assert (await ops_client.post("/api/configs", json=body, headers=ops_admin)).status_code == 201
    again = await ops_client.post("/api/configs", json=body, headers=ops_admin)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]

    unknown_pool = site_body("other", free_port(), "nosuchpool")
    response = await ops_client.post("/api/configs", json=unknown_pool, headers=ops_admin)
    assert response.status_code == 422 and "nosuchpool" in response.json()["detail"]

    missing = await ops_client.get("/api/configs/missing", headers=ops_admin)
    assert missing.status_code == 404 and missing.json()["detail"].startswith("Config with ID")
    body["id"] = "other-id"
    mismatch = await ops_client.put("/api/configs/dup", json=body, headers=ops_admin)
    assert mismatch.status_code == 400


async def test_mutations_need_admin(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    ops_user: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    body = site_body("owned", free_port(), backends[0].address)
    assert (await ops_client.post("/api/configs", json=body, headers=ops_admin)).status_code == 201
    pool = {"name": "pool_a", "servers": [backends[0].address]}
    calls = [
        ("POST", "/api/configs", site_body("x", free_port(), backends[0].address)),
        ("PUT", "/api/configs/owned", body),
        ("DELETE", "/api/configs/owned", None),
        ("POST", "/api/configs/owned/toggle", None),
        ("POST", "/api/load-balancer/pools", pool),
        ("PUT", "/api/load-balancer/pools/pool_a", pool),
        ("DELETE", "/api/load-balancer/pools/pool_a", None),
    ]
    for method, path, payload in calls:
        response = await ops_client.request(method, path, json=payload, headers=ops_user)
        assert response.status_code == 403, (method, path, response.text)
    # Reading is fine for any signed-in user; anonymous callers are refused.
    assert (await ops_client.get("/api/configs", headers=ops_user)).status_code == 200
    assert (await ops_client.get("/api/configs")).status_code == 401
    assert [p.name for p in private_nginx.conf_dir.glob("vpsapi-*")] == ["vpsapi-site-owned.conf"]


async def test_concurrent_creates_of_one_site_give_one_201_and_matching_file_and_row(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    ports = [free_port() for _ in range(4)]
    responses = await asyncio.gather(
        *(
            ops_client.post(
                "/api/configs",
                json=site_body("race", port, f"http://{backends[0].address}"),
                headers=ops_admin,
            )
            for port in ports
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409], [
        r.text for r in responses
    ]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["detail"] == "Config with ID 'race' already exists"
    [port] = [r.json()["listen_port"] for r in responses if r.status_code == 201]
    row = (await ops_client.get("/api/configs/race", headers=ops_admin)).json()
    text = (private_nginx.conf_dir / "vpsapi-site-race.conf").read_text()
    assert row["listen_port"] == port
    assert re.findall(r"listen (\d+)", text) == [str(port)]
    assert through_nginx(port).text == "backend one"


async def test_concurrent_toggles_and_updates_keep_file_and_row_together(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    first = free_port()
    body = site_body("busy", first, f"http://{backends[0].address}")
    assert (await ops_client.post("/api/configs", json=body, headers=ops_admin)).status_code == 201
    # Two toggles at once are two flips: back to active.
    toggles = await asyncio.gather(
        *(ops_client.post("/api/configs/busy/toggle", headers=ops_admin) for _ in range(2))
    )
    assert [r.status_code for r in toggles] == [200, 200]
    assert sorted(r.json()["is_active"] for r in toggles) == [False, True]
    assert (await ops_client.get("/api/configs/busy", headers=ops_admin)).json()["is_active"]
    assert (private_nginx.conf_dir / "vpsapi-site-busy.conf").exists()

    ports = [free_port() for _ in range(3)]
    updates = await asyncio.gather(
        *(
            ops_client.put(
                "/api/configs/busy",
                json=site_body("busy", port, f"http://{backends[0].address}"),
                headers=ops_admin,
            )
            for port in ports
        )
    )
    assert [r.status_code for r in updates] == [200, 200, 200]
    row = (await ops_client.get("/api/configs/busy", headers=ops_admin)).json()
    text = (private_nginx.conf_dir / "vpsapi-site-busy.conf").read_text()
    assert re.findall(r"listen (\d+)", text) == [str(row["listen_port"])]


async def test_a_second_server_for_one_name_and_port_is_refused(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    """nginx accepts it, warns, and ignores the second: it would serve nothing."""
    port = free_port()
    first = site_body("first", port, backends[0].address)
    assert (await ops_client.post("/api/configs", json=first, headers=ops_admin)).status_code == 201
    twin = site_body("twin", port, backends[1].address)
    refused = await ops_client.post("/api/configs", json=twin, headers=ops_admin)
    assert refused.status_code == 422, refused.text
    assert "another server already answers this name on this port" in refused.json()["detail"]
    assert 'conflicting server name "example.test"' in refused.json()["nginx_output"]
    assert not (private_nginx.conf_dir / "vpsapi-site-twin.conf").exists()
    assert through_nginx(port).text == "backend one"
    # Another name on the same port is another server.
    other = site_body("other", port, backends[1].address, server_name="other.test")
    assert (await ops_client.post("/api/configs", json=other, headers=ops_admin)).status_code == 201


async def test_an_ssl_redirect_needs_the_site_off_port_80(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], backends: list[NamedBackend]
) -> None:
    body = site_body(
        "tls",
        80,
        backends[0].address,
        ssl_cert="/etc/ssl/vpsapi/example.test.crt",
        ssl_key="/etc/ssl/vpsapi/example.test.key",
        ssl_redirect=True,
    )
    response = await ops_client.post("/api/configs", json=body, headers=ops_admin)
    assert response.status_code == 422, response.text
    assert "listen on another, e.g. 443" in response.json()["detail"][0]["msg"]
