"""Analytics checked against a straightforward Python computation on generated readings."""

from __future__ import annotations

import random
import re
import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

BASE = "/api/v1/citypulse"
ANALYTICS = f"{BASE}/analytics"
# The analysed window, and the data behind its baselines: the same 14 days 52 weeks
# earlier and the four weeks before it.
W_START = datetime(2026, 2, 28, tzinfo=UTC)
W_END = W_START + timedelta(days=14)
YEAR = timedelta(days=364)
WINDOW = {"from": W_START.isoformat(), "to": W_END.isoformat()}
HOUR = timedelta(hours=1)

Samples = list[tuple[datetime, float]]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def quarter_hours(start: datetime, end: datetime, rng: random.Random, base: float) -> Samples:
    """15-minute power readings with gaps (some hours have none)."""
    samples, moment = [], start
    while moment < end:
        if (moment.hour * 7 + moment.day) % 11 != 3:
            samples.append((moment, round(base + 20 * rng.random() + (moment.hour % 6), 3)))
        moment += timedelta(minutes=15)
    return samples


def hourly_kwh(samples: Samples) -> dict[datetime, float]:
    """Per hour: the mean kW of the readings in it, i.e. the kWh of that hour."""
    by_hour: dict[datetime, list[float]] = defaultdict(list)
    for moment, value in samples:
        by_hour[moment.replace(minute=0, second=0)].append(value)
    return {hour: sum(vs) / len(vs) for hour, vs in by_hour.items()}


def in_window(hours: dict[datetime, float], start: datetime, end: datetime) -> dict:
    return {h: v for h, v in hours.items() if start <= h < end}


def per_day(*sensor_hours: dict[datetime, float]) -> dict[datetime, float]:
    days: dict[datetime, float] = defaultdict(float)
    for hours in sensor_hours:
        for hour, kwh in hours.items():
            days[hour.replace(hour=0)] += kwh
    return days


async def post_readings(
    client: httpx.AsyncClient, headers: dict, sensor_id: str, samples: Samples
) -> None:
    for i in range(0, len(samples), 10_000):
        body = {
            "readings": [{"timestamp": _iso(t), "value": v} for t, v in samples[i : i + 10_000]]
        }
        response = await client.post(
            f"{BASE}/sensors/{sensor_id}/readings", json=body, headers=headers
        )
        assert response.status_code == 201, response.text


async def create(client: httpx.AsyncClient, headers: dict, path: str, body: dict) -> str:
    response = await client.post(f"{BASE}{path}", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


@pytest.fixture
async def campus(client: httpx.AsyncClient, manager: dict[str, str]) -> dict[str, Any]:
    """Building A (two meters, occupancy), B (one meter), C (one meter, no floor area)."""
    rng = random.Random(2026)
    a = await create(client, manager, "/buildings", {"name": "A", "floorAreaM2": 1200.0})
    b = await create(client, manager, "/buildings", {"name": "B", "floorAreaM2": 300.0})
    c = await create(client, manager, "/buildings", {"name": "C"})
    meters: dict[str, tuple[str, Samples]] = {}
    for key, building, base in (("a1", a, 40), ("a2", a, 10), ("b1", b, 15), ("c1", c, 5)):
        sensor = await create(
            client,
            manager,
            f"/buildings/{building}/sensors",
            {"name": key, "kind": "electricity", "unit": "kW"},
        )
        samples = quarter_hours(W_START, W_END, rng, base)
        if building == a:
            samples = (
                quarter_hours(W_START - YEAR, W_END - YEAR, rng, base * 0.8)
                + quarter_hours(W_START - timedelta(weeks=4), W_START, rng, base * 1.1)
                + samples
            )
        await post_readings(client, manager, sensor, samples)
        meters[key] = (sensor, samples)
    occupancy_id = await create(
        client,
        manager,
        f"/buildings/{a}/sensors",
        {"name": "Eingang", "kind": "occupancy", "unit": "people"},
    )
    occupancy: Samples = []
    moment = W_START
    while moment < W_END:
        if 7 <= moment.hour < 19:  # people counted during opening hours only
            occupancy.append((moment, float(rng.randint(0, 80))))
        moment += timedelta(minutes=30)
    await post_readings(client, manager, occupancy_id, occupancy)
    return {"a": a, "b": b, "c": c, "meters": meters, "occupancy": occupancy}


async def get_data(client: httpx.AsyncClient, headers: dict, path: str, **params: Any) -> Any:
    response = await client.get(f"{ANALYTICS}{path}", params=params, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


async def test_energy_intensity(client: httpx.AsyncClient, manager: dict, campus: dict) -> None:
    a1, a2 = (hourly_kwh(campus["meters"][k][1]) for k in ("a1", "a2"))
    a1, a2 = in_window(a1, W_START, W_END), in_window(a2, W_START, W_END)
    kwh = sum(a1.values()) + sum(a2.values())
    hours = len(set(a1) | set(a2))
    data = await get_data(client, manager, f"/buildings/{campus['a']}/energy-intensity", **WINDOW)
    assert data["kwh"] == pytest.approx(kwh)
    assert data["coveredHours"] == hours
    assert data["annualisedKwh"] == pytest.approx(kwh * 8760 / hours)
    assert data["euiKwhPerM2Year"] == pytest.approx(kwh * 8760 / hours / 1200)
    assert data["floorAreaM2"] == 1200


@pytest.mark.parametrize("method", ["previous-year", "trailing"])
async def test_baseline_vs_actual(
    client: httpx.AsyncClient, manager: dict, campus: dict, method: str
) -> None:
    meters = [hourly_kwh(campus["meters"][k][1]) for k in ("a1", "a2")]
    actual = per_day(*(in_window(m, W_START, W_END) for m in meters))
    shifts = [YEAR] if method == "previous-year" else [timedelta(weeks=k) for k in range(1, 5)]
    earlier: dict[datetime, list[float]] = defaultdict(list)
    for shift in shifts:
        shifted = per_day(*(in_window(m, W_START - shift, W_END - shift) for m in meters))
        for day, kwh in shifted.items():
            earlier[day + shift].append(kwh)
    expected = {day: sum(vs) / len(vs) for day, vs in earlier.items()}

    data = await get_data(
        client, manager, f"/buildings/{campus['a']}/baseline", **WINDOW, method=method, step="1d"
    )
    assert [b["timestamp"] for b in data["buckets"]] == [_iso(d) for d in sorted(actual)]
    for bucket in data["buckets"]:
        day = datetime.fromisoformat(bucket["timestamp"])
        assert bucket["actualKwh"] == pytest.approx(actual[day])
        assert bucket["baselineKwh"] == pytest.approx(expected[day])
        assert bucket["deviationKwh"] == pytest.approx(actual[day] - expected[day])
        assert bucket["deviationPercent"] == pytest.approx(
            (actual[day] - expected[day]) / expected[day] * 100
        )
    assert data["totals"]["actualKwh"] == pytest.approx(sum(actual.values()))
    assert data["totals"]["baselineKwh"] == pytest.approx(sum(expected.values()))
    assert data["weeks"] == (4 if method == "trailing" else None)


async def test_occupancy_normalised(client: httpx.AsyncClient, manager: dict, campus: dict) -> None:
    meters = [in_window(hourly_kwh(campus["meters"][k][1]), W_START, W_END) for k in ("a1", "a2")]
    kwh_days = per_day(*meters)
    people = hourly_kwh(campus["occupancy"])  # mean people per hour = person-hours
    person_days = per_day(people)
    hours_per_day: dict[datetime, int] = defaultdict(int)
    for hour in people:
        hours_per_day[hour.replace(hour=0)] += 1

    data = await get_data(
        client, manager, f"/buildings/{campus['a']}/occupancy-normalised", **WINDOW
    )
    assert len(data["buckets"]) == 14
    for bucket in data["buckets"]:
        day = datetime.fromisoformat(bucket["timestamp"])
        assert bucket["kwh"] == pytest.approx(kwh_days[day])
        assert bucket["personHours"] == pytest.approx(person_days[day])
        assert bucket["meanOccupancy"] == pytest.approx(person_days[day] / hours_per_day[day])
        assert bucket["kwhPerPersonHour"] == pytest.approx(kwh_days[day] / person_days[day])
    totals = data["totals"]
    assert totals["kwhPerPersonHour"] == pytest.approx(
        sum(kwh_days.values()) / sum(person_days.values())
    )


async def test_top_consumers(client: httpx.AsyncClient, manager: dict, campus: dict) -> None:
    totals = {}
    for key, building in (("a", campus["a"]), ("b", campus["b"]), ("c", campus["c"])):
        kwh = 0.0
        for meter, (_, samples) in campus["meters"].items():
            if meter.startswith(key):
                kwh += sum(in_window(hourly_kwh(samples), W_START, W_END).values())
        totals[building] = kwh
    area = {campus["a"]: 1200.0, campus["b"]: 300.0, campus["c"]: None}

    by_kwh = await get_data(client, manager, "/top-consumers", **WINDOW)
    ranked = sorted(totals, key=lambda b: -totals[b])
    assert [i["buildingId"] for i in by_kwh["items"]] == ranked
    assert [i["kwh"] for i in by_kwh["items"]] == pytest.approx([totals[b] for b in ranked])
    assert [i["rank"] for i in by_kwh["items"]] == [1, 2, 3]

    by_intensity = await get_data(
        client, manager, "/top-consumers", **WINDOW, by="intensity", limit=3
    )
    with_area = sorted((b for b in totals if area[b]), key=lambda b: -(totals[b] / (area[b] or 1)))
    assert [i["buildingId"] for i in by_intensity["items"]] == [*with_area, campus["c"]]
    first = by_intensity["items"][0]
    assert first["kwhPerM2"] == pytest.approx(
        totals[first["buildingId"]] / area[first["buildingId"]]
    )
    assert by_intensity["items"][-1]["kwhPerM2"] is None
    assert len((await get_data(client, manager, "/top-consumers", **WINDOW, limit=1))["items"]) == 1


async def test_anomalies_by_robust_z_score(
    client: httpx.AsyncClient, manager: dict, make_sensor: Any
) -> None:
    sensor = await make_sensor("Labor", "Raumluft", "temperature", "°C")
    rng = random.Random(7)
    start = datetime(2026, 5, 1, tzinfo=UTC)
    samples = [
        (start + timedelta(minutes=15 * i), round(rng.gauss(21.0, 0.8), 3)) for i in range(2000)
    ]
    for i in (100, 733, 1500):
        samples[i] = (samples[i][0], 35.0)
    samples[1200] = (samples[1200][0], 2.5)
    await post_readings(client, manager, sensor["id"], samples)

    values = [v for _, v in samples]
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    window = {"from": _iso(start), "to": _iso(start + timedelta(days=30))}
    expected_counts = {}
    for threshold in (3.5, 2.0):
        expected = [
            (t, v, 0.6745 * (v - median) / mad)
            for t, v in samples
            if abs(0.6745 * (v - median) / mad) > threshold
        ]
        data = await get_data(
            client, manager, f"/sensors/{sensor['id']}/anomalies", **window, threshold=threshold
        )
        assert data["readings"] == 2000
        assert data["median"] == pytest.approx(median)
        assert data["mad"] == pytest.approx(mad)
        assert data["scaleMethod"] == "mad"
        assert data["anomalyCount"] == expected_counts.setdefault(threshold, len(expected))
        assert [a["timestamp"] for a in data["anomalies"]] == [_iso(t) for t, _, _ in expected]
        assert [a["score"] for a in data["anomalies"]] == pytest.approx([s for *_, s in expected])
    assert {a["value"] for a in data["anomalies"]} >= {35.0, 2.5}
    limited = await get_data(
        client, manager, f"/sensors/{sensor['id']}/anomalies", **window, limit=2
    )
    assert len(limited["anomalies"]) == 2 and limited["anomalyCount"] == expected_counts[3.5]

    # A flat signal has MAD 0: the mean absolute deviation takes over.
    flat = await make_sensor("Flach", "Konstant", "temperature", "°C")
    steady = [(start + timedelta(minutes=i), 20.0) for i in range(30)] + [
        (start + timedelta(hours=1), 30.0)
    ]
    await post_readings(client, manager, flat["id"], steady)
    data = await get_data(client, manager, f"/sensors/{flat['id']}/anomalies", **window)
    assert data["mad"] == 0 and data["scaleMethod"] == "meanAbsoluteDeviation"
    mean_ad = 10.0 / 31
    assert data["anomalies"] == [
        {
            "timestamp": _iso(start + timedelta(hours=1)),
            "value": 30.0,
            "score": pytest.approx(10 / (1.253314 * mean_ad)),
        }
    ]


def _cache_count(text: str, result: str) -> float:
    match = re.search(
        rf'vpsapi_citypulse_analytics_cache_total{{result="{result}"}} ([0-9.e+]+)', text
    )
    return float(match.group(1)) if match else 0.0


async def test_cached_until_new_readings_arrive(
    client: httpx.AsyncClient, manager: dict, make_sensor: Any
) -> None:
    sensor = await make_sensor("Turm", "Zähler", "electricity", "kW")
    patch = await client.patch(
        f"{BASE}/buildings/{sensor['buildingId']}", json={"floorAreaM2": 100}, headers=manager
    )
    assert patch.status_code == 200
    await post_readings(client, manager, sensor["id"], [(W_START, 10.0)])
    path = f"/buildings/{sensor['buildingId']}/energy-intensity"

    async def hits() -> float:
        return _cache_count((await client.get("/metrics")).text, "hit")

    before = await hits()
    first = await get_data(client, manager, path, **WINDOW)
    assert await hits() == before
    again = await get_data(client, manager, path, **WINDOW)
    assert again == first and await hits() == before + 1
    top = await get_data(client, manager, "/top-consumers", **WINDOW)

    await post_readings(client, manager, sensor["id"], [(W_START + HOUR, 30.0)])
    fresh = await get_data(client, manager, path, **WINDOW)
    assert (first["kwh"], fresh["kwh"]) == (10.0, 40.0)
    assert fresh["coveredHours"] == 2
    refreshed = await get_data(client, manager, "/top-consumers", **WINDOW)
    assert refreshed != top  # the cross-building answer was dropped too
    assert await hits() == before + 1

    # A new floor area is part of the cache key.
    await client.patch(
        f"{BASE}/buildings/{sensor['buildingId']}", json={"floorAreaM2": 200}, headers=manager
    )
    resized = await get_data(client, manager, path, **WINDOW)
    assert resized["euiKwhPerM2Year"] == pytest.approx(fresh["euiKwhPerM2Year"] / 2)


async def test_bad_input(
    client: httpx.AsyncClient, manager: dict, create_user: Any, make_sensor: Any
) -> None:
    sensor = await make_sensor("Ohne Fläche", "Zähler", "electricity", "kW")
    building = sensor["buildingId"]
    _, reader = await create_user("user")
    cases: list[tuple[str, dict, int]] = [
        (f"/buildings/{'0' * 32}/energy-intensity", WINDOW, 404),
        (f"/buildings/{building}/energy-intensity", WINDOW, 422),  # no floor area
        (f"/buildings/{building}/energy-intensity", {"from": WINDOW["from"]}, 422),
        (f"/buildings/{building}/baseline", {**WINDOW, "method": "magic"}, 422),
        (f"/buildings/{building}/baseline", {**WINDOW, "weeks": 0}, 422),
        (f"/buildings/{building}/baseline", {**WINDOW, "step": "5m"}, 422),
        (f"/buildings/{building}/baseline", {"from": WINDOW["to"], "to": WINDOW["from"]}, 422),
        (f"/buildings/{'0' * 32}/occupancy-normalised", WINDOW, 404),
        (f"/buildings/{building}/occupancy-normalised", {**WINDOW, "from": "soon"}, 422),
        (
            f"/buildings/{building}/occupancy-normalised",
            {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z", "step": "1h"},
            422,
        ),
        (f"/sensors/{sensor['id']}/anomalies", {"from": WINDOW["to"], "to": WINDOW["from"]}, 422),
        ("/top-consumers", {"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"}, 422),
        (f"/sensors/{'0' * 32}/anomalies", WINDOW, 404),
        (f"/sensors/{sensor['id']}/anomalies", {**WINDOW, "threshold": 0}, 422),
        (f"/sensors/{sensor['id']}/anomalies", {**WINDOW, "limit": 0}, 422),
        ("/top-consumers", {**WINDOW, "by": "volume"}, 422),
        ("/top-consumers", {**WINDOW, "limit": 1000}, 422),
    ]
    # Moments out of a datetime's range once in UTC: 500s before, on every report.
    for path in (
        f"/buildings/{building}/energy-intensity",
        f"/buildings/{building}/baseline",
        f"/buildings/{building}/occupancy-normalised",
        f"/sensors/{sensor['id']}/anomalies",
        "/top-consumers",
    ):
        cases.append((path, {**WINDOW, "from": "0001-01-01T00:00:00+05:00"}, 422))
        cases.append((path, {**WINDOW, "to": "9999-12-31T23:59:59-05:00"}, 422))
    for path, params, status in cases:
        response = await client.get(f"{ANALYTICS}{path}", params=params, headers=reader)
        assert response.status_code == status, (path, params, response.text)
        body = response.json()
        assert body["success"] is False and body["statusCode"] == status
        if status == 422 and "no floorAreaM2" not in body["message"]:
            assert body["errors"], body  # validation: the fields are named
    assert (await client.get(f"{ANALYTICS}/top-consumers", params=WINDOW)).status_code == 401
    # Readers may read; an empty sensor has no anomalies rather than an error.
    empty = await get_data(client, reader, f"/sensors/{sensor['id']}/anomalies", **WINDOW)
    assert empty["readings"] == 0 and empty["anomalies"] == [] and empty["median"] is None


async def test_overview_sums_up_the_portfolio_and_lists_the_reports(
    client: httpx.AsyncClient, manager: dict, create_user: Any, make_sensor: Any
) -> None:
    assert (await client.get(ANALYTICS)).status_code == 401
    _, reader = await create_user("user")
    empty = await get_data(client, reader, "")
    assert (empty["buildings"], empty["sensors"], empty["openAlerts"]) == (0, 0, 0)
    assert empty["energyLast24Hours"]["kwh"] == 0 and empty["energyLast7Days"]["coveredHours"] == 0
    names = {report["name"]: report["path"] for report in empty["reports"]}
    assert names["top-consumers"] == f"{ANALYTICS}/top-consumers"
    assert names["energy-intensity"] == f"{ANALYTICS}/buildings/{{buildingId}}/energy-intensity"
    assert set(names) == {
        "energy-intensity",
        "baseline",
        "occupancy-normalised",
        "anomalies",
        "top-consumers",
    }

    meter = await make_sensor("Halle", "Zähler", "electricity", "kW")
    other = await make_sensor("Depot", "Zähler", "electricity", "kW")
    await make_sensor("Depot 2", "Raum", "temperature", "°C")
    rule = {"sensorId": other["id"], "name": "Last", "condition": "above", "threshold": 50}
    await create(client, manager, "/alerts/rules", rule)
    now = datetime.now(UTC).replace(microsecond=0)
    await post_readings(
        client,
        manager,
        meter["id"],
        [(now - timedelta(hours=3), 10.0), (now - timedelta(hours=3, minutes=15), 20.0)],
    )
    await post_readings(client, manager, meter["id"], [(now - timedelta(days=3), 7.0)])
    await post_readings(client, manager, other["id"], [(now - timedelta(minutes=5), 60.0)])

    data = await get_data(client, reader, "")
    assert (data["buildings"], data["sensors"]) == (3, 3)
    assert data["sensorsByKind"] == {"electricity": 2, "temperature": 1}
    assert (data["openAlerts"], data["acknowledgedAlerts"]) == (1, 0)
    day, week = data["energyLast24Hours"], data["energyLast7Days"]
    # Hourly means summed (as every report does); the window ends with the current hour.
    hours = {(now - timedelta(hours=3)).hour, (now - timedelta(hours=3, minutes=15)).hour}
    expected_day = 60.0 + (15.0 if len(hours) == 1 else 30.0)
    assert day["kwh"] == pytest.approx(expected_day)
    assert week["kwh"] == pytest.approx(expected_day + 7.0)
    end = datetime.fromisoformat(day["to"])
    assert end.minute == 0 and end - datetime.fromisoformat(day["from"]) == timedelta(days=1)
    assert week["to"] == day["to"]


async def test_the_bucket_cap_counts_the_buckets_a_window_touches(
    client: httpx.AsyncClient, manager: dict
) -> None:
    """As /energy does: 20,000 steps from the start of a bucket are 20,000 buckets, from
    the middle of one they touch 20,001 (the first begun before `from`): one too many."""
    created = await client.post(
        f"{BASE}/buildings", json={"name": "Cap", "floorAreaM2": 100}, headers=manager
    )
    building = created.json()["data"]["id"]
    hourly = {
        f"/buildings/{building}/baseline": ({"step": "1h"}, "step"),
        f"/buildings/{building}/occupancy-normalised": ({"step": "1h"}, "step"),
        f"/buildings/{building}/energy-intensity": ({}, "to"),
    }
    cases = [(path, extra, field, HOUR) for path, (extra, field) in hourly.items()]
    cases.append(("/top-consumers", {}, "to", timedelta(days=1)))
    aligned = datetime(2000, 1, 1, tzinfo=UTC)
    for path, extra, field, width in cases:
        for start, status in ((aligned, 200), (aligned + width / 2, 422)):
            window = {"from": _iso(start), "to": _iso(start + 20_000 * width)}
            response = await client.get(
                f"{ANALYTICS}{path}", params={**window, **extra}, headers=manager
            )
            assert response.status_code == status, (path, start, response.text)
            if status == 422:
                assert field in response.json()["errors"], response.text
    energy = await client.get(
        f"{BASE}/energy",
        params={"from": _iso(aligned + HOUR / 2), "to": _iso(aligned + HOUR / 2 + 20_000 * HOUR)},
        headers=manager,
    )
    assert energy.status_code == 422
    # The same cap, told alike.
    assert energy.json()["errors"]["step"] == response.json()["errors"]["to"]
    assert energy.json()["errors"]["step"] == [
        "Too many buckets: use a coarser step or a shorter range (at most 20000)"
    ]
