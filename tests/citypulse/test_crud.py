from __future__ import annotations

from typing import Any

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD, deleted_right_after, login, same_answer
from vpsapi.citypulse import service
from vpsapi.citypulse.models import Building

BASE = "/api/v1/citypulse"


@pytest.fixture
async def reader(create_user: Any) -> dict[str, str]:
    _, headers = await create_user("user")
    return headers


async def _building(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict:
    body = {"name": "Rathaus", "city": "Berlin", "floorAreaM2": 1200.0, **fields}
    response = await client.post(f"{BASE}/buildings", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_building_crud_and_roles(
    client: httpx.AsyncClient, manager: dict[str, str], reader: dict[str, str]
) -> None:
    building = await _building(client, manager, buildingType="office")
    assert building["floorAreaM2"] == 1200.0 and building["createdAt"].endswith("Z")
    listed = await client.get(f"{BASE}/buildings", headers=reader)
    assert [b["id"] for b in listed.json()["data"]["items"]] == [building["id"]]

    forbidden = await client.post(f"{BASE}/buildings", json={"name": "x"}, headers=reader)
    assert forbidden.status_code == 403
    assert forbidden.json()["success"] is False

    patched = await client.patch(
        f"{BASE}/buildings/{building['id']}", json={"city": "Hamburg"}, headers=manager
    )
    assert patched.status_code == 200 and patched.json()["data"]["city"] == "Hamburg"
    got = await client.get(f"{BASE}/buildings/{building['id']}", headers=reader)
    assert got.json()["data"]["city"] == "Hamburg"

    assert (
        await client.delete(f"{BASE}/buildings/{building['id']}", headers=manager)
    ).status_code == 204
    missing = await client.get(f"{BASE}/buildings/{building['id']}", headers=reader)
    assert missing.status_code == 404 and missing.json()["statusCode"] == 404


async def test_building_list_filters_sort_and_cursor(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    for name, city in [("C-Haus", "Berlin"), ("A-Haus", "Berlin"), ("B-Haus", "Köln")]:
        await _building(client, manager, name=name, city=city)
    listed = await client.get(f"{BASE}/buildings", params={"city": "Berlin"}, headers=manager)
    assert [b["name"] for b in listed.json()["data"]["items"]] == ["A-Haus", "C-Haus"]

    names: list[str] = []
    cursor = None
    while True:
        params = {"sort": "-name", "limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(f"{BASE}/buildings", params=params, headers=manager)).json()[
            "data"
        ]
        names += [b["name"] for b in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert names == ["C-Haus", "B-Haus", "A-Haus"]

    search = await client.get(f"{BASE}/buildings", params={"q": "b-h"}, headers=manager)
    assert [b["name"] for b in search.json()["data"]["items"]] == ["B-Haus"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x", "floorAreaM2": -5},
        {"name": "x", "floorAreaM2": 1e8},  # beyond any building
        {"name": "x" * 201},
        {"name": 5},
    ],
)
async def test_building_bad_input(
    client: httpx.AsyncClient, manager: dict[str, str], body: dict
) -> None:
    response = await client.post(f"{BASE}/buildings", json=body, headers=manager)
    assert response.status_code == 422
    assert response.json()["errors"]
    listed = await client.get(f"{BASE}/buildings", headers=manager)
    assert listed.json()["data"]["items"] == []


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"NaN", b"Infinity"])
async def test_non_finite_floor_area_is_refused(
    client: httpx.AsyncClient, manager: dict[str, str], number: bytes
) -> None:
    # JSON's 1e999 parses as infinity: it was stored (shown as null) and made the
    # energy intensity 0.0 instead of the documented 422.
    headers = manager | {"Content-Type": "application/json"}
    created = await client.post(
        f"{BASE}/buildings",
        content=b'{"name": "x", "floorAreaM2": ' + number + b"}",
        headers=headers,
    )
    assert created.status_code == 422, created.text
    assert "floorAreaM2" in created.json()["errors"]
    building = await _building(client, manager)
    patched = await client.patch(
        f"{BASE}/buildings/{building['id']}",
        content=b'{"floorAreaM2": ' + number + b"}",
        headers=headers,
    )
    assert patched.status_code == 422, patched.text
    got = await client.get(f"{BASE}/buildings/{building['id']}", headers=manager)
    assert got.json()["data"]["floorAreaM2"] == 1200.0


async def test_a_boolean_is_no_floor_area(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    """JSON's true was stored as 1.0 m² (pydantic's lax mode reads it as 1)."""
    created = await client.post(
        f"{BASE}/buildings", json={"name": "x", "floorAreaM2": True}, headers=manager
    )
    assert created.status_code == 422, created.text
    assert created.json()["errors"] == {
        "floorAreaM2": ["Input should be a number, not true or false"]
    }
    building = await _building(client, manager)
    url = f"{BASE}/buildings/{building['id']}"
    patched = await client.patch(url, json={"floorAreaM2": False}, headers=manager)
    assert patched.status_code == 422, patched.text
    assert list(patched.json()["errors"]) == ["floorAreaM2"]
    for number, stored in ((60, 60.0), (60.5, 60.5), ("60", 60.0)):  # numbers still are
        patched = await client.patch(url, json={"floorAreaM2": number}, headers=manager)
        assert patched.status_code == 200, patched.text
        assert patched.json()["data"]["floorAreaM2"] == stored


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "secret"}, "sort"),
        ({"sort": "-"}, "sort"),
        ({"sort": "--name"}, "sort"),
        ({"limit": 0}, "limit"),
        ({"limit": 1000}, "limit"),
    ],
)
async def test_building_list_bad_params(
    client: httpx.AsyncClient, manager: dict[str, str], params: dict, field: str
) -> None:
    """Validation answers name the parameter, as FastAPI's own do (bad cursors: see
    test_building_list.py)."""
    response = await client.get(f"{BASE}/buildings", params=params, headers=manager)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["statusCode"] == 422
    assert body["error"] == "ValidationError" and field in body["errors"], body


async def test_name_search_treats_wildcards_as_characters(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    plain = await _building(client, manager, name="Rathaus", city="Berlin")
    percent = await _building(client, manager, name="100% Ökostrom", city="Bonn")
    underscore = await _building(client, manager, name="Haus_B", city="Köln", address="a\\b")

    async def names(**params: str) -> list[str]:
        listed = await client.get(f"{BASE}/buildings", params=params, headers=manager)
        assert listed.status_code == 200, listed.text
        return [b["id"] for b in listed.json()["data"]["items"]]

    assert await names(q="%") == [percent["id"]]
    assert await names(q="_") == [underscore["id"]]
    assert await names(q="\\") == []
    assert await names(q="rat") == [plain["id"]]

    async def found(query: str) -> list[str]:
        response = await client.get(
            "/api/v1/search", params={"q": query, "kind": "buildings"}, headers=manager
        )
        assert response.status_code == 200, response.text
        return [r["id"] for r in response.json()["data"]["results"]]

    assert await found("%") == [percent["id"]]
    assert await found("_") == [underscore["id"]]
    assert await found("\\") == [underscore["id"]]  # in its address


async def test_requires_auth(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"{BASE}/buildings")).status_code == 401


async def test_sensor_crud(
    client: httpx.AsyncClient, manager: dict[str, str], reader: dict[str, str]
) -> None:
    building = await _building(client, manager)
    url = f"{BASE}/buildings/{building['id']}/sensors"
    created = await client.post(
        url, json={"name": "Hauptzähler", "kind": "electricity", "unit": "kW"}, headers=manager
    )
    assert created.status_code == 201, created.text
    sensor = created.json()["data"]
    assert sensor["buildingId"] == building["id"]

    assert [s["id"] for s in (await client.get(url, headers=reader)).json()["data"]] == [
        sensor["id"]
    ]
    by_kind = await client.get(f"{BASE}/sensors", params={"kind": "gas"}, headers=reader)
    assert by_kind.json()["data"] == []
    patched = await client.patch(
        f"{BASE}/sensors/{sensor['id']}", json={"unit": "W"}, headers=manager
    )
    assert patched.json()["data"]["unit"] == "W"
    assert (await client.get(f"{BASE}/sensors/{sensor['id']}", headers=reader)).status_code == 200

    bad_kind = await client.post(
        url, json={"name": "x", "kind": "plasma", "unit": "u"}, headers=manager
    )
    assert bad_kind.status_code == 422
    orphan = await client.post(
        f"{BASE}/buildings/nope/sensors",
        json={"name": "x", "kind": "gas", "unit": "m3"},
        headers=manager,
    )
    assert orphan.status_code == 404
    null_unit = await client.patch(
        f"{BASE}/sensors/{sensor['id']}", json={"unit": None}, headers=manager
    )
    assert null_unit.status_code == 422 and null_unit.json()["errors"] == {
        "unit": ["cannot be null"]
    }
    null_name = await client.patch(
        f"{BASE}/buildings/{building['id']}", json={"name": None}, headers=manager
    )
    assert null_name.status_code == 422 and "name" in null_name.json()["errors"]

    # Deleting the building removes its sensors.
    await client.delete(f"{BASE}/buildings/{building['id']}", headers=manager)
    assert (await client.get(f"{BASE}/sensors/{sensor['id']}", headers=reader)).status_code == 404


async def test_a_patch_changing_nothing_keeps_updated_at_and_etag(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    """An empty PATCH moved `updatedAt`, so every cached copy (its ETag) went stale."""
    building = await _building(client, manager, buildingType="office")
    created = await client.post(
        f"{BASE}/buildings/{building['id']}/sensors",
        json={"name": "Gas", "kind": "gas", "unit": "m3"},
        headers=manager,
    )
    sensor = created.json()["data"]
    for url, same in (
        (f"{BASE}/buildings/{building['id']}", {"name": "Rathaus", "floorAreaM2": 1200}),
        (f"{BASE}/sensors/{sensor['id']}", {"name": "Gas", "unit": "m3"}),
    ):
        before = await client.get(url, headers=manager)
        for body in ({}, same):
            patched = await client.patch(url, json=body, headers=manager)
            assert patched.status_code == 200, patched.text
            assert patched.json()["data"] == before.json()["data"], body
        after = await client.get(url, headers=manager)
        assert after.headers["etag"] == before.headers["etag"]
        changed = await client.patch(url, json={"name": "Neu"}, headers=manager)
        assert changed.json()["data"]["name"] == "Neu"
        assert changed.json()["data"]["createdAt"] == before.json()["data"]["createdAt"]


async def test_a_sensor_may_be_created_at_sensors_naming_its_building(
    client: httpx.AsyncClient, manager: dict[str, str], reader: dict[str, str]
) -> None:
    building = await _building(client, manager)
    body = {"buildingId": building["id"], "name": "Gas", "kind": "gas", "unit": "m3"}
    created = await client.post(f"{BASE}/sensors", json=body, headers=manager)
    assert created.status_code == 201, created.text
    assert created.json()["data"]["buildingId"] == building["id"]
    listed = await client.get(f"{BASE}/buildings/{building['id']}/sensors", headers=reader)
    assert [s["id"] for s in listed.json()["data"]] == [created.json()["data"]["id"]]
    missing = await client.post(
        f"{BASE}/sensors",
        json={k: v for k, v in body.items() if k != "buildingId"},
        headers=manager,
    )
    assert missing.status_code == 422 and "buildingId" in missing.json()["errors"]
    unknown = await client.post(
        f"{BASE}/sensors", json={**body, "buildingId": "nope"}, headers=manager
    )
    assert unknown.status_code == 404
    assert (await client.post(f"{BASE}/sensors", json=body, headers=reader)).status_code == 403


async def test_a_sensor_of_a_building_deleted_meanwhile_is_a_404(
    client: httpx.AsyncClient, manager: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The building deleted by a concurrent request after the check that it exists: its
    foreign key refuses the sensor, answered as an unknown building is (was a 500)."""
    building = await _building(client, manager)
    body = {"buildingId": building["id"], "name": "Gas", "kind": "gas", "unit": "m3"}
    unknown = await client.post(
        f"{BASE}/sensors", json={**body, "buildingId": "nope"}, headers=manager
    )
    deleted_right_after(
        monkeypatch, service, "get_building", "citypulse_buildings", lambda found: found.id
    )
    raced = await client.post(f"{BASE}/sensors", json=body, headers=manager)
    assert unknown.status_code == 404 and same_answer(raced, unknown), raced.text
    monkeypatch.undo()
    assert (await client.get(f"{BASE}/sensors", headers=manager)).json()["data"] == []


async def test_citypulse_turned_off_answers_503(make_client: Any) -> None:
    """CITYPULSE_ENABLED, a switch of the seed's, was not read: the API answered as ever."""
    off = await make_client(citypulse_enabled=False)
    tokens = await login(off, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    for method, path in (
        ("GET", "/buildings"),
        ("POST", "/buildings"),
        ("GET", "/energy"),
        ("GET", "/analytics"),
        ("GET", "/alerts"),
    ):
        response = await off.request(method, f"{BASE}{path}", json={"name": "x"}, headers=headers)
        assert response.status_code == 503, (path, response.text)
        body = response.json()
        assert body["success"] is False and body["error"] == "ServiceUnavailable"
        assert body["message"] == "CityPulse is turned off on this server (CITYPULSE_ENABLED=false)"
    assert (await off.get("/api/v1/info", headers=headers)).status_code == 200  # the rest is on
    # Nor are its buildings found by the search.
    async with off.app.state.db.session() as session:  # type: ignore[attr-defined]
        session.add(Building(name="Hidden depot", created_by=tokens["user"]["id"]))
    for params in ({"q": "Hidden depot"}, {"kind": "buildings"}):
        found = await off.get("/api/v1/search", params=params, headers=headers)
        assert found.status_code == 200 and found.json()["data"]["results"] == [], params
    off.app.state.settings.citypulse_enabled = True  # type: ignore[attr-defined]
    found = await off.get("/api/v1/search", params={"q": "Hidden depot"}, headers=headers)
    assert [hit["title"] for hit in found.json()["data"]["results"]] == ["Hidden depot"]


async def test_citypulse_uses_its_rate_limit_tier(make_client: Any) -> None:
    client = await make_client(rate_limit_enabled=True)
    response = await client.get(f"{BASE}/buildings")
    assert response.status_code == 401
    assert response.headers["x-ratelimit-limit"] == "200"


async def test_buildings_in_search(client: httpx.AsyncClient, manager: dict[str, str]) -> None:
    building = await _building(client, manager, name="Stadtbibliothek", city="Leipzig")
    await _building(client, manager, name="Schwimmhalle", city="Dresden")
    response = await client.get(
        "/api/v1/search", params={"q": "leipzig", "kind": "buildings"}, headers=manager
    )
    assert response.status_code == 200, response.text
    results = response.json()["data"]["results"]
    assert [(r["kind"], r["id"], r["title"]) for r in results] == [
        ("buildings", building["id"], "Stadtbibliothek")
    ]
    assert results[0]["url"] == f"{BASE}/buildings/{building['id']}"


async def test_frontend_source_is_counted_in_metrics(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    def count(text: str, source: str) -> float:
        line = f'vpsapi_citypulse_frontend_requests_total{{source="{source}"}}'
        values = [float(row.split()[-1]) for row in text.splitlines() if row.startswith(line)]
        return values[0] if values else 0.0

    before = (await client.get("/metrics")).text
    await client.get(f"{BASE}/buildings", headers=manager | {"X-Frontend-Source": "FlowMind"})
    await client.get(f"{BASE}/buildings", headers=manager | {"X-Frontend-Source": "x" * 300})
    after = (await client.get("/metrics")).text
    assert count(after, "flowmind") == count(before, "flowmind") + 1
    assert count(after, "other") == count(before, "other") + 1
    assert "x" * 300 not in after
