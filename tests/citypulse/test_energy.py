from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import pytest

BASE = "/api/v1/citypulse"
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)
QUARTER_HOURS = 365 * 96


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _power(i: int, phase: float) -> float:
    """A daily load curve with some noise-like variation, in kW."""
    return round(20 + 10 * math.sin((i % 96) / 96 * 2 * math.pi + phase) + (i * 13 % 7), 3)


async def _sensor(client: httpx.AsyncClient, headers: dict, building_id: str, kind: str) -> str:
    response = await client.post(
        f"{BASE}/buildings/{building_id}/sensors",
        json={"name": kind, "kind": kind, "unit": "kW"},
        headers=headers,
    )
    return str(response.json()["data"]["id"])


async def test_energy_for_a_year_matches_plain_python(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    building = await client.post(
        f"{BASE}/buildings", json={"name": "Bad", "floorAreaM2": 800}, headers=manager
    )
    building_id = building.json()["data"]["id"]
    main = await _sensor(client, manager, building_id, "electricity")
    sub = await _sensor(client, manager, building_id, "electricity")
    water = await _sensor(client, manager, building_id, "water")

    series: dict[str, list[tuple[datetime, float]]] = {
        main: [
            (YEAR_START + timedelta(minutes=15 * i), _power(i, 0.0)) for i in range(QUARTER_HOURS)
        ],
        # The second meter only reports during December.
        sub: [
            (YEAR_START + timedelta(minutes=15 * i), _power(i, 1.0))
            for i in range(QUARTER_HOURS - 31 * 96, QUARTER_HOURS)
        ],
        water: [(YEAR_START, 999.0)],
    }
    for sensor_id, samples in series.items():
        for chunk in range(0, len(samples), 10_000):
            body = {
                "readings": [
                    {"timestamp": _iso(t), "value": v} for t, v in samples[chunk : chunk + 10_000]
                ]
            }
            response = await client.post(
                f"{BASE}/sensors/{sensor_id}/readings", json=body, headers=manager
            )
            assert response.status_code == 201, response.text

    def expected(
        start: datetime, end: datetime
    ) -> tuple[dict[datetime, float], dict[datetime, float]]:
        per_sensor_day: dict[tuple[str, datetime], list[float]] = defaultdict(list)
        instant: dict[datetime, float] = defaultdict(float)
        for sensor_id in (main, sub):
            for t, v in series[sensor_id]:
                if start <= t < end:
                    per_sensor_day[(sensor_id, t.replace(hour=0, minute=0))].append(v)
                    instant[t] += v
        kwh: dict[datetime, float] = defaultdict(float)
        for (_, day), values in per_sensor_day.items():
            kwh[day] += sum(values) / len(values) * 24
        peak: dict[datetime, float] = defaultdict(float)
        for t, v in instant.items():
            day = t.replace(hour=0, minute=0)
            peak[day] = max(peak[day], v)
        return kwh, peak

    december = datetime(2025, 12, 1, tzinfo=UTC)
    year_end = datetime(2026, 1, 1, tzinfo=UTC)
    response = await client.get(
        f"{BASE}/energy",
        params={
            "building": building_id,
            "from": _iso(december),
            "to": _iso(year_end),
            "step": "1d",
        },
        headers=manager,
    )
    assert response.status_code == 200, response.text
    report = response.json()["data"]
    kwh, peak = expected(december, year_end)
    assert [b["timestamp"] for b in report["buckets"]] == [_iso(d) for d in sorted(kwh)]
    assert [b["kwh"] for b in report["buckets"]] == pytest.approx([kwh[d] for d in sorted(kwh)])
    assert [b["peakKw"] for b in report["buckets"]] == pytest.approx([peak[d] for d in sorted(kwh)])
    total = sum(kwh.values())
    assert report["totals"]["kwh"] == pytest.approx(total)
    assert report["totals"]["cost"] == pytest.approx(total * 0.30, abs=1e-3)
    assert report["totals"]["peakKw"] == pytest.approx(max(peak.values()))
    assert report["currency"] == "EUR"

    previous_kwh, _ = expected(december - timedelta(days=31), december)
    comparison = report["comparison"]
    assert comparison["previousFrom"] == _iso(december - timedelta(days=31))
    assert comparison["previousKwh"] == pytest.approx(sum(previous_kwh.values()))
    assert comparison["changePercent"] == pytest.approx(
        (total - sum(previous_kwh.values())) / sum(previous_kwh.values()) * 100, abs=1e-2
    )

    whole_year = await client.get(
        f"{BASE}/energy",
        params={
            "building": building_id,
            "from": _iso(YEAR_START),
            "to": _iso(year_end),
            "step": "1d",
        },
        headers=manager,
    )
    year_kwh, _ = expected(YEAR_START, year_end)
    assert whole_year.json()["data"]["totals"]["kwh"] == pytest.approx(sum(year_kwh.values()))
    assert whole_year.json()["data"]["comparison"]["changePercent"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
        {"building": "nope", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
        {"building": "B", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        {
            "building": "B",
            "from": "2026-01-01T00:00:00Z",
            "to": "2026-01-02T00:00:00Z",
            "step": "2h",
        },
        {
            "building": "B",
            "from": "2000-01-01T00:00:00Z",
            "to": "2026-01-02T00:00:00Z",
            "step": "5m",
        },
    ],
)
async def test_energy_bad_input(
    client: httpx.AsyncClient, manager: dict[str, str], params: dict
) -> None:
    building = await client.post(f"{BASE}/buildings", json={"name": "B"}, headers=manager)
    if params.get("building") == "B":
        params = params | {"building": building.json()["data"]["id"]}
    response = await client.get(f"{BASE}/energy", params=params, headers=manager)
    assert response.status_code in (400, 404, 422)
    assert response.json()["success"] is False


async def test_get_answers_carry_weak_etag_and_304(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    created = await client.post(f"{BASE}/buildings", json={"name": "Etag"}, headers=manager)
    url = f"{BASE}/buildings/{created.json()['data']['id']}"
    first = await client.get(url, headers=manager)
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert "must-revalidate" in first.headers["cache-control"]

    cached = await client.get(url, headers=manager | {"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""

    await client.patch(url, json={"name": "Etag 2"}, headers=manager)
    changed = await client.get(url, headers=manager | {"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
