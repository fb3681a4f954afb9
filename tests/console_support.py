"""Helpers of the console's browser tests (importable as `console_support`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support import ADMIN_EMAIL, ADMIN_PASSWORD, ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "console"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@dataclass
class Console:
    """One browser tab on the console, recording everything that went wrong in it."""

    page: Any
    base_url: str
    backend: str
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Expect problems matching `pattern` (e.g. the 401 of a wrong password)."""
        self.allowed.append(re.compile(pattern))

    def record(self, text: str) -> None:
        if not any(p.search(text) for p in self.allowed):
            self.problems.append(text)

    def open(self) -> None:
        self.page.goto(self.base_url + "/")
        self.page.wait_for_selector("form input[name=login]")

    def login(self, login: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
        self.open()
        self.page.fill("input[name=login]", login)
        self.page.fill("input[name=password]", password)
        self.page.click("form button[type=submit]")
        self.page.wait_for_selector("header.topbar")

    def visit(self, path: str) -> None:
        self.page.goto(f"{self.base_url}/#/{path}")
        self.settle()

    def settle(self) -> None:
        """Wait until no part of the page is still loading."""
        self.page.wait_for_function(
            "() => document.querySelector('#main') && !document.querySelector('#main .spinner')"
        )

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        width = self.page.viewport_size["width"]
        path = ARTIFACTS / f"{name}-{width}-{self.backend}.png"
        self.page.evaluate("window.scrollTo(0, 0)")  # the sticky header stays on top
        self.page.screenshot(path=str(path), full_page=True)
        return path


def admin_token(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/api/v1/auth/login",
        json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["data"]["accessToken"]
    return token


def socketio_mounted(base_url: str) -> bool:
    """Whether this build serves Socket.IO (the buildings page's live updates)."""
    response = httpx.get(f"{base_url}/ws/", params={"EIO": "4", "transport": "polling"}, timeout=5)
    return response.status_code != 404
