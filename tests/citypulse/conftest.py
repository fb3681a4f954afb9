"""CityPulse fixtures: a manager (who may write) and a sensor factory."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

BASE = "/api/v1/citypulse"


@pytest.fixture
async def manager(create_user: Any) -> dict[str, str]:
    _, headers = await create_user("manager")
    return headers


@pytest.fixture
def make_sensor(client: httpx.AsyncClient, manager: dict[str, str]) -> Any:
    """Create a building with one sensor of `kind`; returns the sensor."""

    async def make(building: str, name: str, kind: str, unit: str) -> dict:
        created_building = await client.post(
            f"{BASE}/buildings", json={"name": building}, headers=manager
        )
        created = await client.post(
            f"{BASE}/buildings/{created_building.json()['data']['id']}/sensors",
            json={"name": name, "kind": kind, "unit": unit},
            headers=manager,
        )
        return created.json()["data"]

    return make
