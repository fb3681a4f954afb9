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
        per_sensor_hour: dict[tuple[str, datetime], list[float]] = defaultdict(list)
        instant: dict[datetime, float] = defaultdict(float)
        for sensor_id in (main, sub):
            for t, v in series[sensor_id]:
                if start <= t < end:
                    per_sensor_hour[(sensor_id, t.replace(minute=0))].append(v)
                    instant[t] += v
        kwh: dict[datetime, float] = defaultdict(float)
        for (_, hour), values in per_sensor_hour.items():
            kwh[hour.replace(hour=0)] += sum(values) / len(values)  # mean kW for one hour
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


async def test_energy_counts_the_hours_with_readings_whatever_the_step(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    """10 kW for two hours is 20 kWh in hourly buckets and in the day's (a day's mean power
    times 24 hours made it 240), and at 5 minutes where readings are that dense."""
    building = await client.post(f"{BASE}/buildings", json={"name": "Sparse"}, headers=manager)
    building_id = building.json()["data"]["id"]
    sensor = await _sensor(client, manager, building_id, "electricity")
    ten = datetime(2025, 3, 1, 10, tzinfo=UTC)
    readings = [{"timestamp": _iso(ten + timedelta(minutes=m)), "value": 10.0} for m in range(120)]
    response = await client.post(
        f"{BASE}/sensors/{sensor}/readings", json={"readings": readings}, headers=manager
    )
    assert response.status_code == 201, response.text
    day = {"building": building_id, "from": "2025-03-01T00:00:00Z", "to": "2025-03-02T00:00:00Z"}
    for step, buckets, with_readings in (("5m", 288, 24), ("1h", 24, 2), ("1d", 1, 1)):
        response = await client.get(f"{BASE}/energy", params={**day, "step": step}, headers=manager)
        assert response.status_code == 200, response.text
        report = response.json()["data"]
        assert len(report["buckets"]) == buckets
        assert len([b for b in report["buckets"] if b["kwh"]]) == with_readings
        assert report["totals"]["kwh"] == pytest.approx(20.0), step
        assert report["totals"]["cost"] == pytest.approx(6.0), step


HALF_PAST = datetime(2000, 1, 1, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        (
            {"building": "nope", "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"},
            404,
            None,
        ),
        (
            {"building": "B", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
            422,
            "to",
        ),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, 422, "to"),
        ({"from": "2099-01-01T00:00:00Z"}, 422, "to"),  # after the default `to`
        (
            {
                "building": "B",
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
                "step": "2h",
            },
            422,
            "step",
        ),
        (
            {
                "building": "B",
                "from": "2000-01-01T00:00:00Z",
                "to": "2026-01-02T00:00:00Z",
                "step": "5m",
            },
            422,
            "step",
        ),
        # 20,000 hours from a half hour touch 20,001 hourly buckets.
        (
            {"from": _iso(HALF_PAST), "to": _iso(HALF_PAST + timedelta(hours=20_000))},
            422,
            "step",
        ),
        # Out of a datetime's range once in UTC (500s before).
        ({"building": "B", "from": "0001-01-01T00:00:00+05:00"}, 422, "from"),
        ({"building": "B", "to": "9999-12-31T23:59:59-05:00"}, 422, "to"),
        ({"from": "0001-01-01T00:00:00+05:00", "to": "0001-01-02T00:00:00Z"}, 422, "from"),
    ],
)
async def test_energy_bad_input(
    client: httpx.AsyncClient,
    manager: dict[str, str],
    params: dict,
    status: int,
    field: str | None,
) -> None:
    building = await client.post(f"{BASE}/buildings", json={"name": "B"}, headers=manager)
    if params.get("building") == "B":
        params = params | {"building": building.json()["data"]["id"]}
    response = await client.get(f"{BASE}/energy", params=params, headers=manager)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False
    if field is not None:  # 422 in the validation envelope, like FastAPI's own checks
        assert body["error"] == "ValidationError" and field in body["errors"], body


async def test_energy_at_the_ends_of_time(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    # The period before `from` would start before year 1 (a 500 before): it is cut there.
    building = await client.post(f"{BASE}/buildings", json={"name": "Alt"}, headers=manager)
    first_day = {
        "building": building.json()["data"]["id"],
        "from": "0001-01-01T00:00:00Z",
        "to": "0001-01-02T00:00:00Z",
    }
    response = await client.get(f"{BASE}/energy", params=first_day, headers=manager)
    assert response.status_code == 200, response.text
    report = response.json()["data"]
    assert report["from"] == "0001-01-01T00:00:00Z"
    assert report["buckets"][0]["timestamp"] == "0001-01-01T00:00:00Z"
    assert len(report["buckets"]) == 24 and not any(b["kwh"] for b in report["buckets"])
    assert report["comparison"]["previousFrom"] == "0001-01-01T00:00:00Z"
    assert report["comparison"]["previousKwh"] is None
    last_day = {"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:59:59.999Z"}
    response = await client.get(f"{BASE}/energy", params=last_day, headers=manager)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["comparison"]["previousFrom"] == "9999-12-30T00:00:00.001000Z"


async def test_a_bare_energy_get_lists_every_hourly_bucket_of_the_last_day(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    """Buckets without readings are zeros, not left out: a fresh server answered
    `buckets: []` where the last 24 hourly buckets were documented."""
    response = await client.get(f"{BASE}/energy", headers=manager)
    assert response.status_code == 200, response.text
    report = response.json()["data"]
    start = datetime.fromisoformat(report["from"])
    assert [b["timestamp"] for b in report["buckets"]] == [
        _iso(start + timedelta(hours=h)) for h in range(24)
    ]
    assert {(b["kwh"], b["peakKw"], b["cost"]) for b in report["buckets"]} == {(0, 0, 0)}


@pytest.mark.parametrize(
    ("step", "timestamps"),
    [
        ("1d", ["2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z", "2025-03-03T00:00:00Z"]),
        ("1h", [f"2025-03-01T{h:02}:00:00Z" for h in range(10, 24)] + ["2025-03-02T00:00:00Z"]),
    ],
)
async def test_energy_fills_the_buckets_between_readings_with_zeros(
    client: httpx.AsyncClient, manager: dict[str, str], step: str, timestamps: list[str]
) -> None:
    """From the bucket `from` falls in to the one before `to`, readings or not."""
    building = await client.post(f"{BASE}/buildings", json={"name": "Gaps"}, headers=manager)
    building_id = building.json()["data"]["id"]
    sensor = await _sensor(client, manager, building_id, "electricity")
    reading = {"timestamp": "2025-03-01T12:00:00Z", "value": 6.0}
    response = await client.post(f"{BASE}/sensors/{sensor}/readings", json=reading, headers=manager)
    assert response.status_code == 201, response.text
    window = {"from": "2025-03-01T10:30:00Z", "to": timestamps[-1].replace(":00:00Z", ":30:00Z")}
    response = await client.get(
        f"{BASE}/energy", params={**window, "building": building_id, "step": step}, headers=manager
    )
    assert response.status_code == 200, response.text
    buckets = response.json()["data"]["buckets"]
    assert [b["timestamp"] for b in buckets] == timestamps
    bucket_of_reading = "2025-03-01T00:00:00Z" if step == "1d" else "2025-03-01T12:00:00Z"
    assert {b["timestamp"]: b["kwh"] for b in buckets if b["kwh"]} == {bucket_of_reading: 6.0}


async def test_comparison_is_null_without_readings_in_the_previous_period(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    """No readings before `from` is no data to compare with (it said previousKwh 0 and
    changeKwh the whole period); readings of 0 kW are data: 0 kWh, a change, no percent."""
    building = await client.post(f"{BASE}/buildings", json={"name": "New"}, headers=manager)
    building_id = building.json()["data"]["id"]
    sensor = await _sensor(client, manager, building_id, "electricity")
    readings = {"readings": [{"timestamp": "2025-03-02T10:00:00Z", "value": 5.0}]}
    response = await client.post(
        f"{BASE}/sensors/{sensor}/readings", json=readings, headers=manager
    )
    assert response.status_code == 201, response.text
    day = {"building": building_id, "from": "2025-03-02T00:00:00Z", "to": "2025-03-03T00:00:00Z"}

    async def comparison() -> dict:
        response = await client.get(f"{BASE}/energy", params=day, headers=manager)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["totals"]["kwh"] == 5.0
        return dict(response.json()["data"]["comparison"])

    first = await comparison()
    assert (first["previousKwh"], first["changeKwh"], first["changePercent"]) == (None, None, None)
    assert first["previousFrom"] == "2025-03-01T00:00:00Z"
    idle = {"timestamp": "2025-03-01T10:00:00Z", "value": 0.0}
    response = await client.post(f"{BASE}/sensors/{sensor}/readings", json=idle, headers=manager)
    assert response.status_code == 201, response.text
    second = await comparison()
    assert (second["previousKwh"], second["changeKwh"], second["changePercent"]) == (0, 5.0, None)


async def test_energy_without_parameters_covers_every_building_for_the_last_day(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    async def building(name: str) -> str:
        created = await client.post(f"{BASE}/buildings", json={"name": name}, headers=manager)
        return str(created.json()["data"]["id"])

    a, b = await building("Alpha"), await building("Beta")
    a1, a2 = (
        await _sensor(client, manager, a, "electricity"),
        await _sensor(client, manager, a, "electricity"),
    )
    b1 = await _sensor(client, manager, b, "electricity")
    now = datetime.now(UTC).replace(microsecond=0)
    earlier, recent, yesterday = (
        now - timedelta(hours=2),
        now - timedelta(minutes=30),
        now - timedelta(hours=30),
    )
    for sensor_id, moment, kw in [
        (a1, earlier, 10.0),
        (a2, earlier, 4.0),
        (b1, earlier, 5.0),
        (a1, recent, 8.0),
        (a1, yesterday, 100.0),  # before the default window: the comparison period
    ]:
        response = await client.post(
            f"{BASE}/sensors/{sensor_id}/readings",
            json={"timestamp": _iso(moment), "value": kw},
            headers=manager,
        )
        assert response.status_code == 201, response.text

    response = await client.get(f"{BASE}/energy", headers=manager)
    assert response.status_code == 200, response.text
    report = response.json()["data"]
    end = datetime.fromisoformat(report["to"])
    # The 24 hours up to the end of the hour in progress: whole hourly buckets.
    assert end - datetime.fromisoformat(report["from"]) == timedelta(hours=24)
    assert end.minute == end.second == 0 and timedelta(0) < end - now <= timedelta(hours=1)
    assert report["buildingId"] is None and report["step"] == "1h"

    def hour(moment: datetime) -> str:
        return _iso(moment.replace(minute=0, second=0))

    by_bucket = {bucket["timestamp"]: bucket for bucket in report["buckets"]}
    assert by_bucket[hour(earlier)]["kwh"] == 19.0
    assert by_bucket[hour(earlier)]["peakKw"] == 19.0  # every building at one instant
    assert by_bucket[hour(recent)]["kwh"] == 8.0
    assert report["totals"]["kwh"] == 27.0 and report["totals"]["peakKw"] == 19.0
    assert report["comparison"]["previousKwh"] == 100.0
    assert [(x["buildingId"], x["name"], x["kwh"], x["peakKw"]) for x in report["buildings"]] == [
        (a, "Alpha", 22.0, 14.0),
        (b, "Beta", 5.0, 5.0),
    ]

    one = await client.get(f"{BASE}/energy", params={"building": b}, headers=manager)
    assert one.status_code == 200, one.text
    only_b = one.json()["data"]
    assert only_b["buildingId"] == b and only_b["totals"]["kwh"] == 5.0
    assert [x["buildingId"] for x in only_b["buildings"]] == [b]
    assert only_b["comparison"]["previousKwh"] is None  # b had no readings the day before

    # `to` alone: the 24 hours before it; a step of a day: the day in progress.
    until = _iso(now - timedelta(hours=1))
    ending = await client.get(f"{BASE}/energy", params={"to": until}, headers=manager)
    assert ending.json()["data"]["from"] == _iso(now - timedelta(hours=25))
    assert ending.json()["data"]["totals"]["kwh"] == 19.0
    daily = (await client.get(f"{BASE}/energy", params={"step": "1d"}, headers=manager)).json()
    day_end = datetime.fromisoformat(daily["data"]["to"])
    assert day_end.hour == 0 and timedelta(0) < day_end - now <= timedelta(days=1)


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
