"""Admin user management and role checks."""

from __future__ import annotations

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login


async def test_create_list_get_patch_delete(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/api/v1/users",
        json={"email": "Ops@Example.com", "password": "long-enough-1", "role": "manager"},
        headers=admin_headers,
    )
    assert created.status_code == 201
    user = created.json()["data"]
    assert user["email"] == "ops@example.com"
    assert user["role"] == "manager"

    listed = await client.get("/api/v1/users", headers=admin_headers)
    assert {u["email"] for u in listed.json()["data"]["items"]} == {ADMIN_EMAIL, "ops@example.com"}
    got = await client.get(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert got.json()["data"]["id"] == user["id"]

    patched = await client.patch(
        f"/api/v1/users/{user['id']}", json={"role": "user"}, headers=admin_headers
    )
    assert patched.json()["data"]["role"] == "user"

    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert deleted.status_code == 200
    missing = await client.get(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert missing.status_code == 404


@pytest.mark.parametrize("value", ["yes", "false", 0])
async def test_is_active_takes_true_or_false_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user, value: object
) -> None:
    """Lax mode read "yes" as true, "false" and 0 as false: an account switched by a word
    the client may not have meant."""
    user, _headers = await create_user()
    response = await client.patch(
        f"/api/v1/users/{user['id']}", json={"isActive": value}, headers=admin_headers
    )
    assert response.status_code == 422, response.text
    assert list(response.json()["errors"]) == ["isActive"]
    after = await client.get(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert after.json()["data"]["isActive"] is True


async def _create(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> list[str]:
    ids = []
    for index in range(count):
        created = await client.post(
            "/api/v1/users",
            json={"email": f"p{index}@example.com", "password": "long-enough-1"},
            headers=headers,
        )
        ids.append(created.json()["data"]["id"])
    return ids


async def _ids(client: httpx.AsyncClient, headers: dict[str, str], query: str) -> dict:
    response = await client.get(f"/api/v1/users?{query}", headers=headers)
    assert response.status_code == 200, response.text
    page = response.json()["data"]
    return {"ids": [u["id"] for u in page["items"]], "next": page["nextCursor"]}


async def test_pagination(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    await _create(client, admin_headers, 3)
    everyone = (await _ids(client, admin_headers, "limit=200"))["ids"]
    assert len(everyone) == 4
    first = await _ids(client, admin_headers, "limit=2")
    assert first["ids"] == everyone[:2] and first["next"]
    # The cursor a page hands out leads to the next page; the last one hands out none.
    rest = await _ids(client, admin_headers, f"limit=2&cursor={first['next']}")
    assert rest == {"ids": everyone[2:], "next": None}
    # `offset` still picks where a page starts; its cursor goes on from there.
    skipped = await _ids(client, admin_headers, "limit=1&offset=2")
    assert skipped["ids"] == everyone[2:3]
    after = await _ids(client, admin_headers, f"limit=2&cursor={skipped['next']}")
    assert after == {"ids": everyone[3:], "next": None}


async def test_a_user_deleted_between_pages_shifts_no_one_out_of_the_next(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """The cursor was an offset: deleting a user of page 1 made page 2 start one user
    later, skipping one nobody had seen."""
    await _create(client, admin_headers, 4)
    everyone = (await _ids(client, admin_headers, "limit=200"))["ids"]
    first = await _ids(client, admin_headers, "limit=2")
    deleted = await client.delete(f"/api/v1/users/{first['ids'][1]}", headers=admin_headers)
    assert deleted.status_code == 200
    second = await _ids(client, admin_headers, f"limit=2&cursor={first['next']}")
    assert second["ids"] == everyone[2:4]


async def test_offset_and_cursor_together_are_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """The cursor won silently: a client sending both got a page it did not ask for."""
    await _create(client, admin_headers, 2)
    cursor = (await _ids(client, admin_headers, "limit=1"))["next"]
    response = await client.get(f"/api/v1/users?offset=0&cursor={cursor}", headers=admin_headers)
    assert response.status_code == 422, response.text
    assert set(response.json()["errors"]) == {"offset", "cursor"}


@pytest.mark.parametrize("query", ["offset=9223372036854775808", "offset=-1", "limit=0"])
async def test_bad_paging_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/api/v1/users?{query}", headers=admin_headers)
    assert response.status_code == 422


@pytest.mark.parametrize("cursor", ["abc", "2", "%%%"])
async def test_a_cursor_no_page_handed_out_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], cursor: str
) -> None:
    """As every other cursor of /api/v1 (CityPulse, AI usage, jobs)."""
    response = await client.get("/api/v1/users", params={"cursor": cursor}, headers=admin_headers)
    assert response.status_code == 400
    assert response.json()["message"] == "Invalid cursor"


@pytest.mark.parametrize("role", ["user", "manager"])
async def test_non_admin_gets_403(client: httpx.AsyncClient, create_user, role: str) -> None:
    user, headers = await create_user(role)
    for method, path, body in (
        ("GET", "/api/v1/users", None),
        ("POST", "/api/v1/users", {"email": "x@example.com", "password": "long-enough-1"}),
        ("PATCH", f"/api/v1/users/{user['id']}", {"role": "admin"}),
        ("DELETE", f"/api/v1/users/{user['id']}", None),
    ):
        response = await client.request(method, path, json=body, headers=headers)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "Forbidden"


@pytest.mark.parametrize(
    "body",
    [
        {"email": None},
        {"role": None},
        {"username": None},
        {"isActive": None},
        {"password": None},
        {"role": None, "email": None, "username": "renamed"},
    ],
)
async def test_patching_a_required_field_to_null_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user, body: dict
) -> None:
    """It answered 200 and changed nothing; CityPulse's PATCH refuses the same, so
    does this one, in its words."""
    user, _headers = await create_user("manager")
    response = await client.patch(f"/api/v1/users/{user['id']}", json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["success"] is False and answer["error"] == "ValidationError"
    assert answer["errors"] == {
        field: ["cannot be null"] for field, value in body.items() if value is None
    }
    after = (await client.get(f"/api/v1/users/{user['id']}", headers=admin_headers)).json()
    assert after["data"] == user | {"lastLoginAt": after["data"]["lastLoginAt"]}


async def test_organization_is_set_and_cleared_with_null(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user
) -> None:
    """organizationId is the one field null sets (a user in no organization)."""
    user, _headers = await create_user()
    url = f"/api/v1/users/{user['id']}"
    joined = await client.patch(url, json={"organizationId": "org-1"}, headers=admin_headers)
    assert joined.json()["data"]["organizationId"] == "org-1"
    renamed = await client.patch(url, json={"role": "manager"}, headers=admin_headers)
    assert renamed.json()["data"]["organizationId"] == "org-1"  # left out: kept
    left = await client.patch(url, json={"organizationId": None}, headers=admin_headers)
    assert left.status_code == 200, left.text
    assert left.json()["data"]["organizationId"] is None
    after = await client.get(url, headers=admin_headers)
    assert after.json()["data"]["organizationId"] is None


async def test_role_change_takes_effect_immediately(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user
) -> None:
    user, headers = await create_user()
    await client.patch(f"/api/v1/users/{user['id']}", json={"role": "admin"}, headers=admin_headers)
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 200


async def test_duplicate_email_409(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/users",
        json={"email": ADMIN_EMAIL.upper(), "password": "long-enough-1"},
        headers=admin_headers,
    )
    assert response.status_code == 409
    assert response.json()["error"] == "Conflict"


@pytest.mark.parametrize(
    "also",
    [{}, {"username": "renamed-one"}, {"password": "another-password-1"}, {"isActive": False}],
)
async def test_patching_in_a_taken_email_is_409_whatever_else_it_changes(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user, also: dict
) -> None:
    """With another field beside it, a taken email was a 500 (flushed by that field's own
    query before the check)."""
    user, _headers = await create_user()
    response = await client.patch(
        f"/api/v1/users/{user['id']}",
        json={"email": ADMIN_EMAIL.upper(), **also},
        headers=admin_headers,
    )
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "Conflict"
    after = await client.get(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert after.json()["data"]["email"] == user["email"]
    assert after.json()["data"]["isActive"] is True


async def test_usernames_differing_only_in_case_are_one_name(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user
) -> None:
    user, _headers = await create_user()
    renamed = await client.patch(
        f"/api/v1/users/{user['id']}", json={"username": "Admin"}, headers=admin_headers
    )
    assert renamed.status_code == 409
    # The admin still signs in by username.
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200


async def test_a_username_made_from_the_email_is_free_and_valid(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    names = []
    for email in ("admin@other.example", "admin@third.example", "x.y+z@example.com"):
        created = await client.post(
            "/api/v1/users",
            json={"email": email, "password": "long-enough-1"},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        names.append(created.json()["data"]["username"])
    assert names == ["admin-2", "admin-3", "x.yz"]
    short = await client.post(
        "/api/v1/users",
        json={"email": "ab@example.com", "password": "long-enough-1"},
        headers=admin_headers,
    )
    assert short.json()["data"]["username"] == "user-ab"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": "long-enough-1"}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "long-enough-1", "role": "root"}, "role"),
        ({"email": "a@example.com", "password": "long-enough-1", "username": "a b"}, "username"),
    ],
)
async def test_create_validation_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict, field: str
) -> None:
    response = await client.post("/api/v1/users", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert field in response.json()["errors"]
    listed = await client.get("/api/v1/users", headers=admin_headers)
    assert len(listed.json()["data"]["items"]) == 1


async def test_create_and_update_refuse_in_the_documented_words(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user
) -> None:
    bad = {"email": "not-an-email", "password": "short"}
    response = await client.post("/api/v1/users", json=bad, headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["errors"] == {
        "email": ["Invalid email format"],
        "password": ["Password must be at least 8 characters"],
    }
    user, _ = await create_user()
    patched = await client.patch(f"/api/v1/users/{user['id']}", json=bad, headers=admin_headers)
    assert patched.status_code == 422
    assert set(patched.json()["errors"]) == {"email", "password"}
    fetched = await client.get(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert fetched.json()["data"]["email"] == user["email"]


@pytest.mark.parametrize("password", [" " * 8, "\t \n \u00a0   "])
async def test_a_password_of_only_whitespace_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user, password: str
) -> None:
    refused = {"password": ["Password must not be only whitespace"]}
    body = {"email": "blank@example.com", "password": password}
    response = await client.post("/api/v1/users", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["errors"] == refused
    user, headers = await create_user()
    patch = {"password": password}
    patched = await client.patch(f"/api/v1/users/{user['id']}", json=patch, headers=admin_headers)
    assert patched.status_code == 422
    assert patched.json()["errors"] == refused
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200  # unchanged


async def test_a_password_set_before_the_rule_still_signs_in(client: httpx.AsyncClient) -> None:
    """Signing in does not apply the rule for new passwords: an account holding an older
    one must still get in (to change it)."""
    from vpsapi.auth import service

    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        await service.create_user(session, email="old@example.com", password=" " * 8)
    await login(client, "old@example.com", " " * 8)
    legacy = await client.post(
        "/api/auth/login", json={"username": "old@example.com", "password": " " * 8}
    )
    assert legacy.status_code == 200


async def test_admin_cannot_delete_self_or_demote_last_admin(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    me = (await client.get("/api/v1/me", headers=admin_headers)).json()["data"]["user"]
    assert (
        await client.delete(f"/api/v1/users/{me['id']}", headers=admin_headers)
    ).status_code == 409
    demote = await client.patch(
        f"/api/v1/users/{me['id']}", json={"role": "user"}, headers=admin_headers
    )
    assert demote.status_code == 409


async def test_password_change_signs_out_and_new_password_works(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user
) -> None:
    user, headers = await create_user()
    await client.patch(
        f"/api/v1/users/{user['id']}", json={"password": "brand-new-pass-1"}, headers=admin_headers
    )
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    await login(client, user["email"], "brand-new-pass-1")


async def test_unknown_user_404(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = await client.request(
            method,
            "/api/v1/users/does-not-exist",
            json={} if method == "PATCH" else None,
            headers=admin_headers,
        )
        assert response.status_code == 404
