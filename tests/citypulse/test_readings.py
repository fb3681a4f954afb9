from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from support import deleted_right_after, same_answer
from vpsapi.citypulse import service
from vpsapi.citypulse.schemas import ReadingIn

BASE = "/api/v1/citypulse"
START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def sensor(make_sensor: Any) -> dict:
    return await make_sensor("Schule", "Zähler", "electricity", "kW")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_batch_ingest_and_downsampling_match_python(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict
) -> None:
    # Two days of 15-minute readings with a varying value.
    samples = [(START + timedelta(minutes=15 * i), float((i * 7) % 23)) for i in range(192)]
    url = f"{BASE}/sensors/{sensor['id']}/readings"
    body = {"readings": [{"timestamp": _iso(t), "value": v} for t, v in samples]}
    response = await client.post(url, json=body, headers=manager)
    assert response.status_code == 201, response.text
    assert response.json()["data"]["accepted"] == 192

    buckets: dict[datetime, list[float]] = defaultdict(list)
    for t, v in samples:
        buckets[t.replace(minute=0)].append(v)
    expected = {
        "avg": [sum(vs) / len(vs) for vs in buckets.values()],
        "min": [min(vs) for vs in buckets.values()],
        "max": [max(vs) for vs in buckets.values()],
        "last": [vs[-1] for vs in buckets.values()],
    }
    window = {"from": _iso(START), "to": _iso(START + timedelta(days=2))}
    for agg, values in expected.items():
        got = await client.get(url, params=window | {"step": "1h", "agg": agg}, headers=manager)
        assert got.status_code == 200, got.text
        points = got.json()["data"]["points"]
        assert [p["timestamp"] for p in points] == [_iso(t) for t in buckets]
        assert [p["value"] for p in points] == pytest.approx(values)
        assert {p["count"] for p in points} == {4}

    daily = await client.get(url, params=window | {"step": "1d", "agg": "max"}, headers=manager)
    assert len(daily.json()["data"]["points"]) == 2

    raw = await client.get(url, params=window | {"limit": 5}, headers=manager)
    assert [p["value"] for p in raw.json()["data"]["points"]] == [v for _, v in samples[:5]]


async def test_single_reading_overwrites_same_timestamp(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict
) -> None:
    url = f"{BASE}/sensors/{sensor['id']}/readings"
    for value in (1.5, 2.5):
        response = await client.post(
            url, json={"timestamp": _iso(START), "value": value}, headers=manager
        )
        assert response.status_code == 201, response.text
    window = {"from": _iso(START), "to": _iso(START + timedelta(hours=1))}
    points = (await client.get(url, params=window, headers=manager)).json()["data"]["points"]
    assert [(p["timestamp"], p["value"]) for p in points] == [(_iso(START), 2.5)]


async def test_a_receive_stamped_reading_never_replaces_a_stored_one(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict
) -> None:
    # As when another process received a reading for this sensor in the same millisecond.
    url = f"{BASE}/sensors/{sensor['id']}/readings"
    stored = await client.post(url, json={"timestamp": _iso(START), "value": 1.5}, headers=manager)
    assert stored.status_code == 201, stored.text
    app = client._transport.app  # type: ignore[attr-defined]
    async with app.state.db.session() as session:
        same_moment = [ReadingIn(timestamp=START, value=7.0)]
        next_moment = [ReadingIn(timestamp=START + timedelta(milliseconds=1), value=8.0)]
        accepted = await service.ingest_readings(
            session, sensor["id"], [], received=[*same_moment, *next_moment]
        )
    assert accepted == 2
    window = {"from": _iso(START), "to": _iso(START + timedelta(hours=1))}
    points = (await client.get(url, params=window, headers=manager)).json()["data"]["points"]
    assert (points[0]["timestamp"], points[0]["value"]) == (_iso(START), 1.5)  # kept
    assert sorted(p["value"] for p in points) == [1.5, 7.0, 8.0]
    assert len({p["timestamp"] for p in points}) == 3


def _in(delta: timedelta) -> str:
    return _iso(datetime.now(UTC).replace(microsecond=0) + delta)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"value": 1}, "timestamp"),
        ({"timestamp": "yesterday", "value": 1}, "timestamp"),
        ({"timestamp": "2026-01-01T00:00:00Z", "value": "NaN"}, "value"),
        ({"readings": []}, "readings"),
        ({"readings": [{"timestamp": "2026-01-01T00:00:00Z", "value": 1}] * 10_001}, "readings"),
        # Out of any datetime's range in UTC: accepted before, then every query 500ed.
        ({"timestamp": "0001-01-01T00:00:00+05:00", "value": 1}, "timestamp"),
        ({"timestamp": "9999-12-31T23:59:59-05:00", "value": 1}, "timestamp"),
        # Before 1970: integer division put these in the wrong bucket.
        ({"timestamp": "1969-12-31T23:59:59.500Z", "value": 1}, "timestamp"),
        # Far ahead: it would stay the sensor's latest reading (see test_alerts).
        ({"timestamp": _in(timedelta(hours=1)), "value": 1}, "timestamp"),
        ({"timestamp": "2100-01-01T00:00:00Z", "value": 1}, "timestamp"),
        # Finite but absurd: sums over it overflowed to infinity (null in answers).
        ({"timestamp": "2026-01-01T00:00:00Z", "value": 1e308}, "value"),
        ({"timestamp": "2026-01-01T00:00:00Z", "value": -1e13}, "value"),
        # JSON's true and false are no readings (they were stored as 1.0 and 0.0).
        ({"timestamp": "2026-01-01T00:00:00Z", "value": True}, "value"),
        ({"readings": [{"timestamp": "2026-01-01T00:00:00Z", "value": False}]}, "readings.0.value"),
        (
            {
                "readings": [
                    {"timestamp": "2026-01-01T00:00:00Z", "value": 1},
                    {"timestamp": "2026-01-01T00:01:00Z", "value": "warm"},
                ]
            },
            "readings.1.value",
        ),
        (
            {"readings": [{"timestamp": "0001-01-01T00:00:00+05:00", "value": 1}]},
            "readings.0.timestamp",
        ),
    ],
)
async def test_bad_readings_are_rejected(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict, body: dict, field: str
) -> None:
    url = f"{BASE}/sensors/{sensor['id']}/readings"
    response = await client.post(url, json=body, headers=manager)
    assert response.status_code == 422, response.text
    # Named as the client spelled it, not after the union member tried (ReadingIn.value).
    assert field in response.json()["errors"], response.json()["errors"]
    assert not any("Reading" in name for name in response.json()["errors"])
    window = {"from": "0001-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
    stored = await client.get(url, params=window, headers=manager)
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["points"] == []


async def test_readings_at_the_edges_of_the_accepted_range(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict
) -> None:
    url = f"{BASE}/sensors/{sensor['id']}/readings"
    edges = ["1970-01-01T00:00:00Z", _in(timedelta(minutes=4)), "2026-01-01T00:00:00.123Z"]
    body = {"readings": [{"timestamp": t, "value": 1e12} for t in edges]}
    response = await client.post(url, json=body, headers=manager)
    assert response.status_code == 201, response.text
    window = {"from": "1969-01-01T00:00:00Z", "to": _in(timedelta(days=1))}
    daily = await client.get(url, params=window | {"step": "1d", "agg": "max"}, headers=manager)
    assert daily.status_code == 200, daily.text
    points = daily.json()["data"]["points"]
    assert points[0]["timestamp"] == "1970-01-01T00:00:00Z" and points[0]["value"] == 1e12
    raw = await client.get(url, params=window, headers=manager)
    assert "2026-01-01T00:00:00.123000Z" in [p["timestamp"] for p in raw.json()["data"]["points"]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "to"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "step": "7m"}, "step"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "agg": "median"}, "agg"),
        ({"to": "2026-01-02T00:00:00Z"}, "from"),
        ({"from": "0001-01-01T00:00:00+05:00", "to": "2026-01-02T00:00:00Z"}, "from"),
        ({"from": "2026-01-01T00:00:00Z", "to": "9999-12-31T23:59:59-05:00"}, "to"),
    ],
)
async def test_bad_range_queries(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict, params: dict, field: str
) -> None:
    response = await client.get(
        f"{BASE}/sensors/{sensor['id']}/readings", params=params, headers=manager
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["success"] is False and body["error"] == "ValidationError"
    assert field in body["errors"], body["errors"]


async def test_readings_for_unknown_sensor(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    response = await client.post(
        f"{BASE}/sensors/nope/readings",
        json={"timestamp": "2026-01-01T00:00:00Z", "value": 1},
        headers=manager,
    )
    assert response.status_code == 404


async def test_readings_of_a_sensor_deleted_meanwhile_are_a_404(
    client: httpx.AsyncClient,
    manager: dict[str, str],
    make_sensor: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sensor (or its building) deleted by a concurrent request after the check that
    it exists: answered as an unknown sensor is (was a 500)."""
    sensor = await make_sensor("Halle", "Zähler", "electricity", "kWh")
    reading = {"timestamp": "2026-01-01T00:00:00Z", "value": 1}
    unknown = await client.post(f"{BASE}/sensors/nope/readings", json=reading, headers=manager)
    deleted_right_after(
        monkeypatch, service, "get_sensor", "citypulse_sensors", lambda found: found.id
    )
    raced = await client.post(
        f"{BASE}/sensors/{sensor['id']}/readings", json=reading, headers=manager
    )
    assert unknown.status_code == 404 and same_answer(raced, unknown), raced.text
