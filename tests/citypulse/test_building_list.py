"""GET /buildings: keyset pages, case-insensitive filters and name order."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

BASE = "/api/v1/citypulse"
SORTS = ["name", "-name", "createdAt", "-createdAt", "city", "-city", "floorAreaM2", "-floorAreaM2"]


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict:
    response = await client.post(f"{BASE}/buildings", json=fields, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def _page(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> tuple[list[dict], str | None]:
    response = await client.get(f"{BASE}/buildings", params=params, headers=headers)
    assert response.status_code == 200, response.text
    page = response.json()["data"]
    return page["items"], page["nextCursor"]


def _expected_order(buildings: list[dict], sort: str) -> list[str]:
    """The documented order of `buildings` (given as created): the key (A-Z ignoring
    case), then id, both one way; nulls last either way."""
    field = sort.removeprefix("-")
    descending = sort.startswith("-")
    created = {b["id"]: index for index, b in enumerate(buildings)}  # finer than the ms shown

    def key(building: dict) -> tuple[Any, str]:
        value = created[building["id"]] if field == "createdAt" else building[field]
        return (value.lower() if isinstance(value, str) else value, building["id"])

    present = sorted((b for b in buildings if b[field] is not None), key=key, reverse=descending)
    nulls = sorted(
        (b for b in buildings if b[field] is None), key=lambda b: b["id"], reverse=descending
    )
    return [b["id"] for b in present + nulls]


@pytest.mark.parametrize("sort", SORTS)
async def test_pages_neither_repeat_nor_skip_while_buildings_come_and_go(
    client: httpx.AsyncClient, manager: dict[str, str], sort: str
) -> None:
    """The cursor was an offset: buildings created between pages shifted the list, so the
    next page repeated items (and a deleted one made it skip others)."""
    specs = [
        ("Delta", "Berlin", 500.0),
        ("alpha", None, None),
        ("Echo", "köln", 120.0),
        ("bravo", "Berlin", 500.0),  # ties on city and area: broken by id
        ("Foxtrot", None, 80.0),
        ("charlie", "Aachen", None),
        ("Golf", "berlin", 500.0),
    ]
    initial = [
        await _create(client, manager, name=name, city=city, floorAreaM2=area)
        for name, city, area in specs
    ]
    seen: list[str] = []
    cursor: str | None = None
    ahead = ""
    for round_ in range(20):
        items, cursor = await _page(
            client, manager, sort=sort, limit=2, **({"cursor": cursor} if cursor else {})
        )
        seen += [b["id"] for b in items]
        if cursor is None:
            break
        if round_ == 0:
            # Between pages: two buildings that sort first and two that sort last are added
            # (one more before the cursor than the seen one deleted; in createdAt order new
            # ones come last, so only once), and one still ahead is deleted.
            added = [("aaa", "Aa", 1.0), ("zzz", "Zz", 9e6), ("mmm", None, None)]
            for name, city, area in added + added:
                await _create(client, manager, name=name, city=city, floorAreaM2=area)
            ahead = next(b["id"] for b in initial if b["id"] not in seen)
            for gone in (seen[0], ahead):
                deleted = await client.delete(f"{BASE}/buildings/{gone}", headers=manager)
                assert deleted.status_code == 204
    assert cursor is None and round_ > 1
    assert len(seen) == len(set(seen)), "a page repeated a building"
    survivors = [b for b in initial if b["id"] not in {seen[0], ahead}]
    expected = _expected_order(survivors, sort)
    assert [i for i in seen if i in expected] == expected


async def test_a_cursor_belongs_to_its_sort(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    for name in ("a", "b", "c"):
        await _create(client, manager, name=name, floorAreaM2=10.0)
    _, cursor = await _page(client, manager, sort="name", limit=1)
    assert cursor is not None
    for other in ("-floorAreaM2", "-name", "createdAt"):
        response = await client.get(
            f"{BASE}/buildings", params={"sort": other, "cursor": cursor}, headers=manager
        )
        assert response.status_code == 400, (other, response.text)
        assert response.json()["message"] == "Invalid cursor"
    items, _ = await _page(client, manager, sort="name", limit=1, cursor=cursor)
    assert [b["name"] for b in items] == ["b"]


def _cursor(raw: str | bytes) -> str:
    return base64.urlsafe_b64encode(raw.encode() if isinstance(raw, str) else raw).decode()


@pytest.mark.parametrize(
    ("sort", "cursor"),
    [
        ("name", "!!notbase64"),
        ("name", "Mw=="),  # an offset, as cursors were
        ("name", _cursor(b"\xff")),
        ("name", _cursor("[1, 2")),
        ("name", _cursor(json.dumps(["name", "a"]))),
        ("name", _cursor(json.dumps(["name", 5, "x"]))),
        ("name", _cursor(json.dumps(["name", None, "x"]))),  # names are never null
        ("name", _cursor(json.dumps(["name", "a", None]))),
        ("name", _cursor(json.dumps(["name", "a\x00", "x"]))),
        ("name", _cursor('["name", "\\ud800", "x"]')),
        ("floorAreaM2", _cursor('["floorAreaM2", NaN, "x"]')),
        ("floorAreaM2", _cursor('["floorAreaM2", 1e999, "x"]')),
        ("floorAreaM2", _cursor('["floorAreaM2", true, "x"]')),
        ("floorAreaM2", _cursor('["floorAreaM2", "12", "x"]')),
        ("createdAt", _cursor('["createdAt", "yesterday", "x"]')),
        ("createdAt", _cursor('["createdAt", "0001-01-01T00:00:00+05:00", "x"]')),
        ("name", _cursor("[" * 3000)),  # nested past the JSON parser (was a 500)
    ],
)
async def test_an_altered_cursor_is_a_400(
    client: httpx.AsyncClient, manager: dict[str, str], sort: str, cursor: str
) -> None:
    response = await client.get(
        f"{BASE}/buildings", params={"sort": sort, "cursor": cursor}, headers=manager
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False and body["statusCode"] == 400
    assert body["message"] == "Invalid cursor"


async def test_city_and_type_ignore_case(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    upper = await _create(client, manager, name="a", city="Berlin", buildingType="Office")
    lower = await _create(client, manager, name="b", city="berlin", buildingType="office")
    await _create(client, manager, name="c", city="Berlin-Mitte", buildingType="school")
    both = [upper["id"], lower["id"]]
    for city in ("berlin", "BERLIN", "Berlin"):
        items, _ = await _page(client, manager, city=city)
        assert [b["id"] for b in items] == both, city
    items, _ = await _page(client, manager, type="OFFICE")
    assert [b["id"] for b in items] == both
    items, _ = await _page(client, manager, city="berl")  # the whole name, not a part
    assert items == []


async def test_names_sort_ignoring_case(client: httpx.AsyncClient, manager: dict[str, str]) -> None:
    # A-Z ignore case; other characters order by code point, the same on every engine.
    names = ["Juliet", "ölhaus", "alpha", "Zeta", "Bravo", "Ölwerk", "charlie"]
    for name in names:
        await _create(client, manager, name=name)
    expected = ["alpha", "Bravo", "charlie", "Juliet", "Zeta", "Ölwerk", "ölhaus"]
    items, _ = await _page(client, manager, sort="name")
    assert [b["name"] for b in items] == expected
    items, _ = await _page(client, manager, sort="-name")
    assert [b["name"] for b in items] == expected[::-1]
