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
    for params in ({"q": "x" * 201}, {"q": "a", "limit": 0}, {"limit": 101}):
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


async def test_seed_001_api_key_example_searches_without_a_query(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """Seed 001 shows `GET /api/v1/search` with only an API key: no query matches all the
    caller may see."""
    created = await client.post("/api/v1/api-keys", json={"name": "it"}, headers=admin_headers)
    key = created.json()["data"]["key"]
    job = {"processingType": "type1", "data": [{"i": 1}]}
    for scheme in ("ApiKey", "Bearer"):
        headers = {"Authorization": f"{scheme} {key}"}
        job_id = (await client.post("/api/jobs", json=job, headers=headers)).json()["jobId"]
        response = await client.get("/api/v1/search", headers=headers)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["query"] == ""
        assert job_id in {hit["id"] for hit in data["results"] if hit["kind"] == "jobs"}


async def test_search_text_is_no_pattern(
    client: httpx.AsyncClient, api_token_headers: dict[str, str]
) -> None:
    """`%` and `_` are searched for as written, not as wildcards matching everything."""
    job = {"processingType": "type1", "data": [{"i": 1}]}
    await client.post("/api/jobs", json=job, headers=api_token_headers)
    for text in ("%", "type_", "t%1"):
        response = await client.get(
            "/api/v1/search", params={"q": text, "kind": "jobs"}, headers=api_token_headers
        )
        assert response.status_code == 200
        assert response.json()["data"]["results"] == [], text
