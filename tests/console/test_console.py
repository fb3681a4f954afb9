"""The operator console in a real browser (Chromium through Playwright) against a real
server: sign-in, a job watched to completion, an nginx site created through the form, live
system charts, and every page loading without a console error or a failed request.
Screenshots of every page land in test-artifacts/console/."""

from __future__ import annotations

import contextlib
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from console_support import PHONE, admin_token, socketio_mounted
from ops_support import NamedBackend, through_nginx
from support import ADMIN_PASSWORD, free_port

pytestmark = [pytest.mark.multiprocess, pytest.mark.browser]

PAGES = ["jobs", "devices", "buildings", "system", "sites", "certificates", "backups"]
WAIT_MS = 60_000  # generous: a slow CI machine, not a performance claim


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def is_job_submission(response: Any) -> bool:
    return response.request.method == "POST" and response.url.endswith("/api/jobs")


def job_form_filled(open_console: Any, server: Any, options: str) -> Any:
    """A signed-in console on the jobs page, its form filled for a three-item type2 job."""
    console = open_console(server)
    console.login()
    console.visit("jobs")
    console.page.select_option("select[name=processingType]", "type2")
    console.page.fill("textarea[name=options]", options)
    return console


def submitted_row(page: Any, submitted: Any) -> Any:
    # Its own row: on a shared database other tests' jobs are listed too.
    return page.locator(f'tr[data-job-id="{submitted.value.json()["jobId"]}"]')


def test_console_page_is_served_with_a_strict_csp(console_server: Any) -> None:
    page = httpx.get(console_server.base_url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == "default-src 'self'"
    assert '<script type="module" src="/console/app.js">' in page.text
    assert "style=" not in page.text and "<script>" not in page.text
    assert page.headers["cache-control"] == "no-cache"  # revalidated on every load:
    etag = {"If-None-Match": page.headers["etag"]}
    assert httpx.get(console_server.base_url + "/", headers=etag, timeout=10).status_code == 304
    script = httpx.get(console_server.base_url + "/console/app.js", timeout=10)
    assert script.status_code == 200
    etag = {"If-None-Match": script.headers["etag"]}
    assert httpx.get(script.url, headers=etag, timeout=10).status_code == 304
    assert script.headers["content-type"].startswith("text/javascript")
    assert "x-ratelimit-limit" not in script.headers  # outside the API's limits
    missing = httpx.get(console_server.base_url + "/console/nope.js", timeout=10)
    assert missing.status_code == 404
    also_here = httpx.get(console_server.base_url + "/console", follow_redirects=True, timeout=10)
    assert also_here.status_code == 200
    assert also_here.text == page.text


def test_wrong_password_shows_an_error_and_a_user_sees_no_ops_pages(
    open_console: Any, console_server: Any
) -> None:
    console = open_console(console_server)
    console.allow(r"HTTP 401: POST .*/api/v1/auth/login|status of 401")
    console.open()
    console.page.fill("input[name=login]", "admin@example.com")
    console.page.fill("input[name=password]", "not-the-password")
    console.page.click("form button[type=submit]")
    expect(console.page.locator(".login-error .notice.error")).to_contain_text("Wrong email")
    console.screenshot("login-error")

    email = f"viewer-{uuid.uuid4().hex[:8]}@example.com"
    created = httpx.post(
        console_server.base_url + "/api/v1/users",
        json={"email": email, "password": "viewer-password-1", "role": "user"},
        headers={"Authorization": f"Bearer {admin_token(console_server.base_url)}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    console.login(email, "viewer-password-1")
    nav = console.page.locator("nav.nav a")
    expect(nav).to_have_text(["Jobs", "Devices", "Buildings"])
    console.page.goto(console_server.base_url + "/#/sites")  # not offered: back to jobs
    expect(console.page).to_have_url(re.compile(r"#/jobs$"))
    console.page.click("text=Sign out")
    console.page.wait_for_selector("form input[name=login]")


def test_signing_in_with_the_username(open_console: Any, console_server: Any) -> None:
    console = open_console(console_server)
    console.login("admin", ADMIN_PASSWORD)  # not an email: the seed-002 login takes it
    expect(console.page.locator(".user-name")).to_have_text("admin")
    console.visit("jobs")  # the session works for the API calls that follow


def test_signing_out_cancels_requests_still_under_way(
    open_console: Any, console_server: Any
) -> None:
    """A list request that would reach the server after the logout revoked its token
    is cancelled, not answered 401 (the harness fails on any 401)."""
    console = open_console(console_server)
    console.login()
    console.visit("devices")
    held: list[Any] = []
    page = console.page
    page.route("**/api/jobs?*", lambda route: held.append(route))  # held in the browser
    with page.expect_request("**/api/jobs?*"):
        page.goto(console_server.base_url + "/#/jobs")
    with page.expect_response("**/api/v1/auth/logout"):
        page.click("text=Sign out")
    # Without the cancel this reaches the server with a revoked token; with it, the page
    # has cancelled the request already and Playwright may refuse to continue it.
    with contextlib.suppress(Exception):
        held[0].continue_()
    page.wait_for_load_state("networkidle")


def test_a_submitted_job_reaches_completed_with_a_full_bar(
    open_console: Any, console_server: Any
) -> None:
    console = job_form_filled(open_console, console_server, '{"delayMs": 400}')
    page = console.page
    page.keyboard.press("Tab")  # from the options to the submit button: keyboard only
    expect(page.locator("form button[type=submit]")).to_be_focused()
    with page.expect_response(is_job_submission) as submitted:
        page.keyboard.press("Enter")
    row = submitted_row(page, submitted)
    expect(row).to_have_attribute("data-status", "COMPLETED", timeout=WAIT_MS)
    expect(row.locator("[role=progressbar]")).to_have_attribute("aria-valuenow", "100")
    expect(row.locator(".chip")).to_have_text("completed")
    console.screenshot("jobs-completed")

    row.locator("button", has_text="View").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.locator("pre.json")).to_contain_text('"count": 3', timeout=WAIT_MS)
    with page.expect_download() as download:
        dialog.locator("button", has_text="Download JSON").click()
    assert download.value.suggested_filename.endswith(".json")
    console.screenshot("job-result")
    page.keyboard.press("Escape")
    expect(page.locator("dialog[open]")).to_have_count(0)


def test_a_job_opened_while_it_runs_shows_its_result_when_it_ends(
    open_console: Any, console_server: Any
) -> None:
    page = job_form_filled(open_console, console_server, '{"delayMs": 2000}').page
    with page.expect_response(is_job_submission) as submitted:
        page.locator("form button[type=submit]").click()
    submitted_row(page, submitted).locator("button", has_text="View").click()
    dialog = page.locator("dialog[open]")
    expect(dialog).to_contain_text("The result appears here when the job completes.")
    expect(dialog.locator("pre.json")).to_contain_text('"count": 3', timeout=WAIT_MS)
    expect(dialog.locator(".chip")).to_have_text("completed")
    expect(dialog.locator("button", has_text="Download JSON")).to_be_enabled()


def test_a_bad_job_submission_is_explained_next_to_the_field(
    open_console: Any, console_server: Any
) -> None:
    console = open_console(console_server)
    console.login()
    console.visit("jobs")
    page = console.page
    jobs_before = page.locator("tr[data-job-id]").count()
    page.fill("textarea[name=data]", "[1, 2")
    page.click("text=Submit job")
    expect(page.locator("textarea[name=data] ~ .field-error")).to_contain_text("Not valid JSON")
    expect(page.locator("tr[data-job-id]")).to_have_count(jobs_before)


def test_a_site_created_in_the_form_is_listed_and_served_by_nginx(
    open_console: Any, console_server: Any, private_nginx: Any
) -> None:
    backend = NamedBackend("one")
    try:
        console = open_console(console_server)
        # The second attempt below is refused by nginx -t on purpose.
        console.allow(r"HTTP 422: POST .*/api/configs/validate|status of 422")
        console.login()
        console.visit("sites")
        page = console.page

        port = free_port()
        page.locator(".page-head button", has_text="New site").click()
        form = page.locator("dialog[open] form")
        form.locator("input[name=id]").fill("console-app")
        form.locator("input[name=server_name]").fill("example.test")
        form.locator("input[name=listen_port]").fill(str(port))
        form.locator("input[name=target]").fill(f"http://{backend.address}")
        page.locator("dialog[open] button", has_text="Create site").click()
        row = page.locator("tr[data-site-id=console-app]")
        expect(row.locator(".chip")).to_have_text("enabled", timeout=WAIT_MS)
        assert through_nginx(port).text == "backend one"
        console.screenshot("sites")

        row.locator("button", has_text="Disable").click()
        expect(page.locator("tr[data-site-id=console-app] .chip")).to_have_text("disabled")

        row.locator("button", has_text="Edit").click()
        form = page.locator("dialog[open] form")
        expect(form.locator("input[name=id]")).to_be_disabled()
        form.locator("input[name=server_name]").fill("www.example.test")
        page.locator("dialog[open] button", has_text="Save changes").click()
        expect(row.locator(".sub").first).to_have_text("www.example.test")

        # nginx's own words appear in the form when it refuses a configuration.
        page.locator(".page-head button", has_text="New site").click()
        form = page.locator("dialog[open] form")
        form.locator("input[name=id]").fill("broken")
        form.locator("input[name=listen_port]").fill(str(free_port()))
        form.locator("input[name=target]").fill(f"http://{backend.address}")
        form.locator("summary").click()
        form.locator("input[name=ssl_cert]").fill("/nonexistent/cert.pem")
        form.locator("input[name=ssl_key]").fill("/nonexistent/key.pem")
        page.locator("dialog[open] button", has_text="Create site").click()
        feedback = form.locator(".site-feedback .notice.error")
        expect(feedback).to_contain_text("nginx rejected this configuration")
        expect(feedback.locator("pre")).to_contain_text("/nonexistent/cert.pem")
        console.screenshot("site-rejected")
        page.keyboard.press("Escape")
        expect(page.locator("tr[data-site-id=broken]")).to_have_count(0)

        row.locator("button", has_text="Delete").click()
        page.locator("dialog[open] button", has_text="Delete site").click()
        expect(page.locator("tr[data-site-id=console-app]")).to_have_count(0)
        assert not (private_nginx.conf_dir / "vpsapi-site-console-app.conf").exists()
    finally:
        backend.close()


def offered(server: Any, path: str) -> bool:
    paths = httpx.get(server.base_url + "/openapi.json", timeout=10).json()["paths"]
    return path in paths


def test_certificates_show_days_left(open_console: Any, console_server: Any) -> None:
    if not offered(console_server, "/api/ssl/certificates"):
        pytest.skip("this build has no certificate endpoints yet (/api/ssl/certificates)")
    console = open_console(console_server)
    console.login()
    console.visit("certificates")
    row = console.page.locator("tr[data-domain='app.example.test']")
    expect(row).to_contain_text(re.compile(r"(89|90) d"))
    expect(row).to_contain_text("valid")
    console.screenshot("certificates-listed")


def test_a_backup_is_created_with_progress_and_restored_after_a_confirmation(
    open_console: Any, console_server: Any
) -> None:
    if not offered(console_server, "/api/backup/list"):
        pytest.skip("this build has no backup endpoints yet (/api/backup/list)")
    console = open_console(console_server)
    console.login()
    console.visit("backups")
    page = console.page
    before = page.locator("tr[data-filename]").count()
    page.locator(".page-head button", has_text="Create backup").click()
    page.locator("dialog[open] input[name=description]").fill("from the console test")
    page.locator("dialog[open] button", has_text="Create backup").click()
    row = page.locator("tr[data-filename]", has_text="from the console test")
    expect(row).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("tr[data-filename]")).to_have_count(before + 1)

    with page.expect_download() as download:
        row.locator("button", has_text="Download").click()
    assert download.value.suggested_filename.endswith(".tar.gz")

    row.locator("button", has_text="Restore").click()
    confirm = page.locator("dialog[open]")
    expect(confirm).to_contain_text("replace the current ones")
    console.screenshot("backup-restore-confirm")
    confirm.locator("button", has_text="Restore").click()
    expect(page.locator(".toast.ok", has_text="restored")).to_have_count(1, timeout=WAIT_MS)
    # The restore kept the state before it as a safety backup.
    expect(page.locator("tr[data-filename]")).to_have_count(before + 2, timeout=WAIT_MS)
    console.screenshot("backups-restored")


def test_the_system_charts_draw_live_samples(open_console: Any, console_server: Any) -> None:
    if not offered(console_server, "/api/monitoring/metrics/history"):
        pytest.skip("this build has no monitoring endpoints yet (WS /ws/monitoring, history)")
    console = open_console(console_server)
    console.login()
    console.visit("system")
    chart = console.page.locator("[data-chart=cpu_usage]")
    console.page.wait_for_function(
        "() => Number(document.querySelector('[data-chart=cpu_usage]').dataset.points) >= 2",
        timeout=WAIT_MS,
    )
    expect(chart.locator("canvas")).to_have_count(1)
    expect(console.page.locator(".live-dot .chip")).to_have_text("live")
    console.screenshot("system-live")


def test_a_building_shows_its_energy_and_readings_arrive_live(
    open_console: Any, console_server: Any
) -> None:
    base = f"{console_server.base_url}/api/v1/citypulse"
    headers = {"Authorization": f"Bearer {admin_token(console_server.base_url)}"}
    building = httpx.post(
        f"{base}/buildings",
        json={"name": f"Console Tower {uuid.uuid4().hex[:6]}", "city": "Delft"},
        headers=headers,
        timeout=10,
    ).json()["data"]
    sensor = httpx.post(
        f"{base}/buildings/{building['id']}/sensors",
        json={"name": "Main meter", "kind": "electricity", "unit": "kW"},
        headers=headers,
        timeout=10,
    ).json()["data"]
    now = datetime.now(UTC)
    readings = [
        {"timestamp": (now - timedelta(minutes=15 * i)).isoformat(), "value": 40.0 + i % 7}
        for i in range(1, 80)
    ]
    stored = httpx.post(
        f"{base}/sensors/{sensor['id']}/readings",
        json={"readings": readings},
        headers=headers,
        timeout=10,
    )
    assert stored.status_code == 201, stored.text

    console = open_console(console_server)
    console.login()
    console.visit("buildings")
    page = console.page
    page.locator(f"[data-building-id='{building['id']}']").click()
    page.wait_for_function(
        "() => Number(document.querySelector('[data-chart=energy]')?.dataset.points) >= 2",
        timeout=WAIT_MS,
    )
    card = page.locator(f".reading[data-sensor-id='{sensor['id']}']")
    expect(card.locator(".value")).to_have_text("41.0 kW")  # the newest stored reading
    console.screenshot("buildings-energy")
    if not socketio_mounted(console_server.base_url):
        pytest.skip("this build serves no Socket.IO yet: live readings are not pushed")
    expect(page.locator(".live-dot .chip")).to_have_text("live", timeout=WAIT_MS)
    live = httpx.post(
        f"{base}/sensors/{sensor['id']}/readings",
        json={"timestamp": datetime.now(UTC).isoformat(), "value": 123.4},
        headers=headers,
        timeout=10,
    )
    assert live.status_code == 201, live.text
    expect(card.locator(".value")).to_have_text("123.4 kW", timeout=WAIT_MS)


def test_the_session_is_refreshed_before_the_access_token_expires(
    open_console: Any, settings_factory: Any, server_factory: Any
) -> None:
    server = server_factory(settings_factory(), JWT_EXPIRES_IN="12")
    console = open_console(server)
    console.login()
    read_token = "() => JSON.parse(sessionStorage.getItem('vpsapi.console.session')).accessToken"
    first = console.page.evaluate(read_token)
    console.page.wait_for_function(
        f"(first) => ({read_token})() !== first", arg=first, timeout=WAIT_MS
    )
    console.visit("jobs")  # the API takes the new token (a 401 would fail the test)
    expect(console.page.locator("#main h1")).to_have_text("Jobs")
    expect(console.page.locator("#main .state.error")).to_have_count(0)


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_every_page_loads_without_errors(
    open_console: Any, console_server: Any, viewport: Any
) -> None:
    console = open_console(console_server, viewport)
    console.login()
    for path in PAGES:
        console.visit(path)
        heading = console.page.locator("#main h1")
        expect(heading).to_have_count(1)
        console.screenshot(path)
    if viewport is PHONE:
        # The menu folds away on a phone and opens from the keyboard.
        nav = console.page.locator("nav.nav")
        expect(nav).to_be_hidden()
        console.page.locator("button.menu-toggle").focus()
        console.page.keyboard.press("Enter")
        expect(nav).to_be_visible()
        console.screenshot("menu-open")
