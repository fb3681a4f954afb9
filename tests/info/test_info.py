from __future__ import annotations

import httpx


async def test_info_lists_modules_and_docs(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/info")
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["name"] == "vpsapi"
    assert data["version"]
    assert data["environment"] == "test"
    assert {"auth", "health"} <= {m["name"] for m in data["modules"]}
    assert data["docs"]["openapi"] == "/openapi.json"


async def test_search_requires_auth(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/search", params={"q": "x"})
    assert response.status_code == 401


async def test_search_validates_query(
    client: httpx.AsyncClient, api_token_headers: dict[str, str]
) -> None:
    for params in ({}, {"q": ""}, {"q": "x" * 201}, {"q": "a", "limit": 0}):
        response = await client.get("/api/v1/search", params=params, headers=api_token_headers)
        assert response.status_code == 422
        assert response.json()["errors"]
    # A misspelt kind is not "nothing found".
    response = await client.get(
        "/api/v1/search", params={"q": "a", "kind": "building"}, headers=api_token_headers
    )
    assert response.status_code == 422
    [message] = response.json()["errors"]["kind"]
    assert message.startswith("Unknown kind: use one of ") and "buildings" in message
    known = await client.get(
        "/api/v1/search", params={"q": "a", "kind": "buildings"}, headers=api_token_headers
    )
    assert known.status_code == 200


async def test_search_answers_shape(
    client: httpx.AsyncClient, api_token_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/search", params={"q": "x"}, headers=api_token_headers)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["query"] == "x"
    assert data["count"] == len(data["results"])
