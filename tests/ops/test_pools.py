"""Load-balancer pools become nginx upstreams that sites proxy through; backends are
health-checked."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ops_support import NamedBackend, PrivateNginx, site_body, through_nginx
from support import free_port


async def test_pool_balances_over_its_servers(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    pool = {
        "name": "web_backend",
        "method": "round_robin",
        "servers": [{"address": b.address, "weight": 1} for b in backends],
    }
    created = await ops_client.post("/api/load-balancer/pools", json=pool, headers=ops_admin)
    assert created.status_code == 201, created.text
    assert created.json()["pool"]["name"] == "web_backend"
    text = (private_nginx.conf_dir / "vpsapi-upstream-web_backend.conf").read_text()
    assert "upstream web_backend {" in text

    port = free_port()
    site = site_body("balanced", port, "web_backend")
    assert (await ops_client.post("/api/configs", json=site, headers=ops_admin)).status_code == 201
    seen = {through_nginx(port).text for _ in range(6)}
    assert seen == {"backend one", "backend two"}

    listed = (await ops_client.get("/api/load-balancer/pools", headers=ops_admin)).json()
    assert [p["name"] for p in listed["pools"]] == ["web_backend"]

    # In use: cannot be deleted; a changed pool is applied.
    in_use = await ops_client.delete("/api/load-balancer/pools/web_backend", headers=ops_admin)
    assert in_use.status_code == 409 and "balanced" in in_use.json()["detail"]
    pool["servers"] = [{"address": backends[1].address}]
    pool["method"] = "least_conn"
    updated = await ops_client.put(
        "/api/load-balancer/pools/web_backend", json=pool, headers=ops_admin
    )
    assert updated.status_code == 200, updated.text
    assert {through_nginx(port).text for _ in range(4)} == {"backend two"}

    await ops_client.delete("/api/configs/balanced", headers=ops_admin)
    gone = await ops_client.delete("/api/load-balancer/pools/web_backend", headers=ops_admin)
    assert gone.status_code == 200
    assert not (private_nginx.conf_dir / "vpsapi-upstream-web_backend.conf").exists()


BAD_POOLS: list[dict[str, Any]] = [
    {"name": "a;b", "servers": ["127.0.0.1:1"]},
    {"name": "ok", "servers": []},
    {"name": "ok", "servers": ["127.0.0.1"]},
    {"name": "ok", "servers": ["127.0.0.1:1; evil"]},
    {"name": "ok", "servers": ["127.0.0.1:1"], "method": "random"},
    {"name": "ok", "servers": [{"address": "127.0.0.1:1", "backup": True}]},
    {"name": "ok", "servers": [{"address": "127.0.0.1:1", "weight": 0}]},
    {"name": "ok", "servers": ["127.0.0.1:1"], "health_path": "/x;y"},
]


async def test_bad_pools_are_refused(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], private_nginx: PrivateNginx
) -> None:
    for body in BAD_POOLS:
        response = await ops_client.post("/api/load-balancer/pools", json=body, headers=ops_admin)
        assert response.status_code == 422, (body, response.text)
    assert list(private_nginx.conf_dir.glob("vpsapi-*")) == []
    missing = await ops_client.get("/api/load-balancer/pools/none", headers=ops_admin)
    assert missing.status_code == 404


async def test_backend_health_checks(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    ops_user: dict[str, str],
    backends: list[NamedBackend],
) -> None:
    pool = {"name": "checked", "servers": [backends[0].address, "127.0.0.1:9"]}
    assert (
        await ops_client.post("/api/load-balancer/pools", json=pool, headers=ops_admin)
    ).status_code == 201

    url = f"http://{backends[0].address}/"
    one = await ops_client.get(f"/api/health/backend/{url}", headers=ops_user)
    assert one.status_code == 200, one.text
    assert one.json()["healthy"] is True and one.json()["status_code"] == 200

    report = await ops_client.get("/api/health/backends?refresh=true", headers=ops_user)
    data = report.json()
    assert data["total_backends"] == 2 and data["healthy_backends"] == 1
    down = data["backends"]["http://127.0.0.1:9/"]
    assert down["healthy"] is False and down["error"] and down["pool"] == "checked"

    # A pool's member asked for by its address alone is checked at its pool's health path;
    # another path on it is the admins' to ask for.
    probed = {"name": "probed", "servers": ["127.0.0.1:7"], "health_path": "/healthz"}
    assert (
        await ops_client.post("/api/load-balancer/pools", json=probed, headers=ops_admin)
    ).status_code == 201
    for member in ("127.0.0.1:7", "http://127.0.0.1:7/", "HTTP://127.0.0.1:7/healthz"):
        response = await ops_client.get(f"/api/health/backend/{member}", headers=ops_user)
        assert response.status_code == 200, (member, response.text)
        assert response.json()["backend"] == "http://127.0.0.1:7/healthz"
    chosen = await ops_client.get("/api/health/backend/127.0.0.1:7/admin?x=1", headers=ops_user)
    assert chosen.status_code == 403

    # Arbitrary URLs (not in the managed config) are for admins only; junk is refused.
    other = "http://127.0.0.1:1/"
    assert (
        await ops_client.get(f"/api/health/backend/{other}", headers=ops_user)
    ).status_code == 403
    assert (await ops_client.get(f"/api/health/backend/{other}", headers=ops_admin)).json()[
        "healthy"
    ] is False
    bad = await ops_client.get("/api/health/backend/http://a b/", headers=ops_admin)
    assert bad.status_code == 400


async def test_concurrent_creates_of_one_pool_give_one_201_and_matching_file_and_row(
    ops_client: httpx.AsyncClient,
    ops_admin: dict[str, str],
    private_nginx: PrivateNginx,
    backends: list[NamedBackend],
) -> None:
    weights = [1, 2, 3, 4]
    responses = await asyncio.gather(
        *(
            ops_client.post(
                "/api/load-balancer/pools",
                json={"name": "racing", "servers": [{"address": backends[0].address, "weight": w}]},
                headers=ops_admin,
            )
            for w in weights
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409], [
        r.text for r in responses
    ]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["detail"] == "Load balancer pool 'racing' already exists"
    [weight] = [r.json()["pool"]["servers"][0]["weight"] for r in responses if r.status_code == 201]
    row = (await ops_client.get("/api/load-balancer/pools/racing", headers=ops_admin)).json()
    assert row["servers"][0]["weight"] == weight
    text = (private_nginx.conf_dir / "vpsapi-upstream-racing.conf").read_text()
    assert f"weight={weight}" in text
    assert [w for w in weights if f"weight={w} " in text or f"weight={w};" in text] == [weight]


@pytest.mark.parametrize(
    "url",
    [
        "ftp%3A%2F%2Fx",  # ftp://x, which was checked as http://ftp://x
        "ftp://127.0.0.1:21/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "http://ftp://x",
        "http%3A%2F%2Fftp%3A%2F%2Fx",
        "http://127.0.0.1:/x",
        "http://a b/",
        "http://user@127.0.0.1:1/",
        # Hosts no client can ask (each was a 500).
        "http://999.999.999.999/",
        "http://1.1.1.999/x",
        "300.1.1.1:80",
        "http://01.2.3.4/",
        "http://xn--zz/",
    ],
)
async def test_backend_urls_that_no_client_can_ask_are_refused(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], url: str
) -> None:
    response = await ops_client.get(f"/api/health/backend/{url}", headers=ops_admin)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith("Invalid backend URL")


async def test_backend_url_forms_that_mean_http(
    ops_client: httpx.AsyncClient, ops_admin: dict[str, str], backends: list[NamedBackend]
) -> None:
    address = backends[0].address
    for form in (f"http://{address}/", f"HTTP://{address}/", f"http:/{address}/", address):
        response = await ops_client.get(f"/api/health/backend/{form}", headers=ops_admin)
        assert response.status_code == 200, (form, response.text)
        assert response.json()["backend"].rstrip("/") == f"http://{address}"
        assert response.json()["healthy"] is True
