from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from support import deleted_right_after, same_answer
from vpsapi.citypulse import alerts

BASE = "/api/v1/citypulse"


@pytest.fixture
async def sensor(make_sensor: Any) -> dict:
    return await make_sensor("Kita", "Raum 1", "temperature", "°C")


async def _send(
    client: httpx.AsyncClient, headers: dict, sensor_id: str, minute: int, value: float
) -> None:
    response = await client.post(
        f"{BASE}/sensors/{sensor_id}/readings",
        json={"timestamp": f"2026-03-01T10:{minute:02d}:00Z", "value": value},
        headers=headers,
    )
    assert response.status_code == 201, response.text


async def test_rule_opens_after_duration_then_ack_and_auto_resolve(
    client: httpx.AsyncClient, manager: dict[str, str], create_user: Any, sensor: dict
) -> None:
    rule = await client.post(
        f"{BASE}/alerts/rules",
        json={
            "sensorId": sensor["id"],
            "name": "Überhitzung",
            "condition": "above",
            "threshold": 26,
            "durationSeconds": 600,
            "severity": "critical",
        },
        headers=manager,
    )
    assert rule.status_code == 201, rule.text
    assert rule.json()["data"]["durationSeconds"] == 600

    await _send(client, manager, sensor["id"], 0, 27)
    await _send(client, manager, sensor["id"], 5, 28)
    open_alerts = await client.get(f"{BASE}/alerts", params={"status": "open"}, headers=manager)
    assert open_alerts.json()["data"] == []  # only 5 minutes above the threshold

    await _send(client, manager, sensor["id"], 10, 29)
    open_alerts = (
        await client.get(f"{BASE}/alerts", params={"status": "open"}, headers=manager)
    ).json()["data"]
    assert len(open_alerts) == 1
    alert = open_alerts[0]
    assert alert["severity"] == "critical" and alert["triggerValue"] == 29
    assert alert["buildingId"] == sensor["buildingId"]

    # Still breaching: no second alert for the same rule.
    await _send(client, manager, sensor["id"], 15, 30)
    assert len((await client.get(f"{BASE}/alerts", headers=manager)).json()["data"]) == 1

    _, reader = await create_user("user")
    assert (
        await client.post(f"{BASE}/alerts/{alert['id']}/acknowledge", headers=reader)
    ).status_code == 403
    acked = await client.post(f"{BASE}/alerts/{alert['id']}/acknowledge", headers=manager)
    assert acked.status_code == 200 and acked.json()["data"]["status"] == "acknowledged"
    again = await client.post(f"{BASE}/alerts/{alert['id']}/acknowledge", headers=manager)
    assert again.status_code == 409

    await _send(client, manager, sensor["id"], 20, 22)
    resolved = (await client.get(f"{BASE}/alerts/{alert['id']}", headers=reader)).json()["data"]
    assert resolved["status"] == "resolved" and resolved["resolvedBy"] == "system"
    history = await client.get(f"{BASE}/alerts", params={"status": "resolved"}, headers=reader)
    assert [a["id"] for a in history.json()["data"]] == [alert["id"]]
    assert (
        await client.post(f"{BASE}/alerts/{alert['id']}/resolve", headers=manager)
    ).status_code == 409


async def test_manual_resolve_and_rule_delete(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict
) -> None:
    rule = await client.post(
        f"{BASE}/alerts/rules",
        json={"sensorId": sensor["id"], "name": "Kalt", "condition": "below", "threshold": 15},
        headers=manager,
    )
    await _send(client, manager, sensor["id"], 0, 10)
    alert = (await client.get(f"{BASE}/alerts", headers=manager)).json()["data"][0]
    resolved = await client.post(f"{BASE}/alerts/{alert['id']}/resolve", headers=manager)
    assert resolved.json()["data"]["status"] == "resolved"
    assert resolved.json()["data"]["resolvedBy"].startswith("user:")

    rules = await client.get(
        f"{BASE}/alerts/rules", params={"sensor": sensor["id"]}, headers=manager
    )
    assert [r["id"] for r in rules.json()["data"]] == [rule.json()["data"]["id"]]
    deleted = await client.delete(
        f"{BASE}/alerts/rules/{rule.json()['data']['id']}", headers=manager
    )
    assert deleted.status_code == 204
    assert (
        await client.delete(f"{BASE}/alerts/rules/{rule.json()['data']['id']}", headers=manager)
    ).status_code == 404


async def test_a_reading_stamped_in_the_future_cannot_silence_a_rule(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict
) -> None:
    # A device whose clock runs years ahead: its reading would stay the sensor's latest,
    # so every later (real) reading would be judged by it and no alert would ever open.
    rule = await client.post(
        f"{BASE}/alerts/rules",
        json={"sensorId": sensor["id"], "name": "Heiß", "condition": "above", "threshold": 26},
        headers=manager,
    )
    assert rule.status_code == 201, rule.text
    url = f"{BASE}/sensors/{sensor['id']}/readings"
    now = datetime.now(UTC).replace(microsecond=0)
    ahead = {"timestamp": (now + timedelta(days=365)).isoformat(), "value": 20}
    refused = await client.post(url, json=ahead, headers=manager)
    assert refused.status_code == 422, refused.text
    assert "future" in refused.json()["errors"]["timestamp"][0]

    # A clock a little fast is within the tolerance; the real reading after it counts.
    slightly = {"timestamp": (now + timedelta(minutes=2)).isoformat(), "value": 20}
    assert (await client.post(url, json=slightly, headers=manager)).status_code == 201
    hot = {"timestamp": (now + timedelta(minutes=3)).isoformat(), "value": 30}
    assert (await client.post(url, json=hot, headers=manager)).status_code == 201
    opened = (await client.get(f"{BASE}/alerts", params={"status": "open"}, headers=manager)).json()
    assert [a["triggerValue"] for a in opened["data"]] == [30]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "condition": "above", "threshold": 1},
        {"sensorId": "S", "name": "x", "condition": "sideways", "threshold": 1},
        {"sensorId": "S", "name": "x", "condition": "above", "threshold": 1, "durationSeconds": -1},
        {"sensorId": "S", "name": "", "condition": "above", "threshold": 1},
    ],
)
async def test_bad_rules(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict, body: dict
) -> None:
    if body.get("sensorId") == "S":
        body = body | {"sensorId": sensor["id"]}
    response = await client.post(f"{BASE}/alerts/rules", json=body, headers=manager)
    assert response.status_code == 422
    assert (await client.get(f"{BASE}/alerts/rules", headers=manager)).json()["data"] == []


@pytest.mark.parametrize("field", ["threshold", "durationSeconds"])
async def test_a_boolean_is_no_number_in_a_rule(
    client: httpx.AsyncClient, manager: dict[str, str], sensor: dict, field: str
) -> None:
    body = {"sensorId": sensor["id"], "name": "x", "condition": "above", "threshold": 1}
    response = await client.post(f"{BASE}/alerts/rules", json=body | {field: True}, headers=manager)
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == [field]
    assert (await client.get(f"{BASE}/alerts/rules", headers=manager)).json()["data"] == []


async def test_unknown_alerts_and_sensors(
    client: httpx.AsyncClient, manager: dict[str, str]
) -> None:
    assert (await client.get(f"{BASE}/alerts/nope", headers=manager)).status_code == 404
    assert (await client.post(f"{BASE}/alerts/nope/resolve", headers=manager)).status_code == 404
    rule = await client.post(
        f"{BASE}/alerts/rules",
        json={"sensorId": "nope", "name": "x", "condition": "above", "threshold": 1},
        headers=manager,
    )
    assert rule.status_code == 404
    bad_status = await client.get(f"{BASE}/alerts", params={"status": "maybe"}, headers=manager)
    assert bad_status.status_code == 422


async def test_a_rule_for_a_sensor_deleted_meanwhile_is_a_404(
    client: httpx.AsyncClient,
    manager: dict[str, str],
    sensor: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sensor deleted by a concurrent request after the check that it exists: answered
    as an unknown sensor is (was a 500)."""
    body = {"sensorId": sensor["id"], "name": "x", "condition": "above", "threshold": 1}
    unknown = await client.post(
        f"{BASE}/alerts/rules", json=body | {"sensorId": "nope"}, headers=manager
    )
    deleted_right_after(
        monkeypatch, alerts, "get_sensor", "citypulse_sensors", lambda found: found.id
    )
    raced = await client.post(f"{BASE}/alerts/rules", json=body, headers=manager)
    assert unknown.status_code == 404 and same_answer(raced, unknown), raced.text


async def test_readings_are_kept_when_the_rule_they_breach_is_deleted_meanwhile(
    client: httpx.AsyncClient,
    manager: dict[str, str],
    sensor: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rule deleted by a concurrent request while readings breaching it are stored: no
    alert for the rule that is gone, and the readings stay (all of it was a 500)."""
    body = {"sensorId": sensor["id"], "name": "Heiß", "condition": "above", "threshold": 26}
    assert (await client.post(f"{BASE}/alerts/rules", json=body, headers=manager)).is_success
    deleted_right_after(
        monkeypatch, alerts, "list_rules", "citypulse_alert_rules", lambda rules: rules[0].id
    )
    await _send(client, manager, sensor["id"], 0, 30)
    monkeypatch.undo()
    assert (await client.get(f"{BASE}/alerts", headers=manager)).json()["data"] == []
    stored = await client.get(
        f"{BASE}/sensors/{sensor['id']}/readings",
        params={"from": "2026-03-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"},
        headers=manager,
    )
    assert [point["value"] for point in stored.json()["data"]["points"]] == [30]
