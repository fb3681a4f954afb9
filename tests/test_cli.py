"""The `vpsapi` command, run as a real subprocess."""

from __future__ import annotations

import os
import pty
import re
import select
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support import ROOT, SHARED_API_KEY, free_port
from vpsapi.config import SQLITE_FILE, Settings
from vpsapi.devices.params import ParamKeys


def cli_env(data_dir: Path, **env: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JWT_SECRET", "API_KEY", "ADMIN_PASSWORD", "DATABASE_URL", "REDIS_URL")
    }
    base.update(
        {"PYTHONPATH": str(ROOT / "src"), "DATA_DIR": str(data_dir), "LOG_LEVEL": "WARNING"}
    )
    base.update(env)
    return base


def run(args: list[str], data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vpsapi", *args],
        env=cli_env(data_dir, **env),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=data_dir.parent,
    )


def test_first_migrate_generates_admin_password_and_secret(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run(["migrate"], data)
    assert result.returncode == 0, result.stderr
    password = (data / "admin-password").read_text().strip()
    assert len(password) >= 16
    assert password in result.stderr
    assert stat.S_IMODE((data / "admin-password").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "jwt-secret").stat().st_mode) == 0o600
    # The database beside them holds password and key hashes.
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    secret = (data / "jwt-secret").read_text()
    again = run(["migrate"], data)
    assert again.returncode == 0
    assert password not in again.stderr  # printed once only
    assert (data / "jwt-secret").read_text() == secret


def test_a_database_of_a_newer_version_is_said_as_such(tmp_path: Path) -> None:
    """Going back to an older vpsapi after an upgrade: a clear refusal, not alembic's
    traceback naming a revision."""
    data = tmp_path / "data"
    assert run(["migrate"], data).returncode == 0
    with sqlite3.connect(data / SQLITE_FILE) as database:
        database.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    for command in (["migrate"], ["serve", "--port", "1"]):
        result = run(command, data)
        assert result.returncode == 2, result.stderr
        assert "upgraded by a newer vpsapi (revision 9999_from_the_future" in result.stderr
        assert "Traceback" not in result.stderr


def config_table(stdout: str) -> dict[str, str]:
    """`vpsapi config`'s table as setting name to shown value."""
    return {
        cells[1]: cells[2]
        for line in stdout.splitlines()
        if len(cells := [cell.strip() for cell in line.split("│")]) > 3
    }


def test_short_jwt_secret_refused(tmp_path: Path) -> None:
    result = run(["serve", "--port", "1"], tmp_path / "data", JWT_SECRET="too-short")
    assert result.returncode == 2
    assert "JWT_SECRET is shorter than 32 characters" in result.stderr


def test_a_short_secret_key_is_passed_over(tmp_path: Path) -> None:
    """Seed 002's SECRET_KEY (also Django's and Flask's name) is read as a courtesy: one
    too short to sign with is said and left, not a reason to stop."""
    result = run(["config"], tmp_path / "data", SECRET_KEY="your-secret-key")
    assert result.returncode == 0, result.stderr
    assert "SECRET_KEY is shorter than 32 characters: not used" in result.stderr
    assert config_table(result.stdout)["JWT_SECRET"].startswith("(generated, in")
    used = run(["config"], tmp_path / "data", SECRET_KEY="a-seed-002-secret-key-0123456789abcdef")
    assert "tokens are signed with SECRET_KEY" in used.stderr
    assert config_table(used.stdout)["JWT_SECRET"] == "****"


@pytest.mark.parametrize(
    ("variable", "example"),
    [
        ("SECRET_KEY", "your-secret-key"),  # seed 002
        ("JWT_SECRET", "generate-a-very-secure-random-string-here"),  # seed 000, 41 chars
        ("JWT_SECRET", "your-super-secret-jwt-key-min-32-chars"),  # seed 001
        ("API_KEY", "shared-secret-key-with-vercel-team"),  # seed 000
    ],
)
def test_a_seeds_example_secret_is_warned_about(
    tmp_path: Path, variable: str, example: str
) -> None:
    """Copied from a seed's .env as it stands: a key anyone who read the seed knows. Said,
    not refused: a test bench built from the seed may use it on purpose."""
    # (Development: seed 002's example is also too short for production.)
    result = run(["config"], tmp_path / "data", ENVIRONMENT="development", **{variable: example})
    assert result.returncode == 0, result.stderr
    assert f"{variable} is the example value of a seed's .env" in result.stderr
    assert example not in result.stderr + result.stdout
    own = run(["config"], tmp_path / "data", **{variable: "an-own-long-random-value-0123456789"})
    assert "example value" not in own.stderr


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("DATABASE_POOL_TIMEOUT", "0"),
        ("DATABASE_POOL_TIMEOUT", "-1"),
        ("DATABASE_POOL_TIMEOUT", "soon"),
        ("DATABASE_POOL_SIZE", "0"),
        ("DATABASE_POOL_SIZE", "2.5"),
        ("DATABASE_MAX_OVERFLOW", "-1"),
        ("DATABASE_MAX_OVERFLOW", "many"),
    ],
)
def test_bad_pool_setting_refused(tmp_path: Path, setting: str, value: str) -> None:
    result = run(["serve", "--port", "1"], tmp_path / "data", **{setting: value})
    assert result.returncode == 2
    assert result.stderr.startswith(f"Configuration error: {setting}: ")  # the variable
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr


def test_a_placeholder_sentry_dsn_is_refused_at_start(tmp_path: Path) -> None:
    """Seed 001's example value: a clear line, not a traceback after the server is up."""
    dsn = "https://secretkey123@sentry.io/xxxxx"
    result = run(["serve", "--port", "1"], tmp_path / "data", SENTRY_DSN=dsn)
    assert result.returncode == 2
    assert "Configuration error" in result.stderr
    assert "not a Sentry DSN" in result.stderr
    assert "Traceback" not in result.stderr
    assert "secretkey123" not in result.stdout + result.stderr
    empty = run(["config"], tmp_path / "data", SENTRY_DSN="")  # `SENTRY_DSN=`: none
    assert empty.returncode == 0, empty.stderr


def test_short_admin_password_refused_without_showing_it(tmp_path: Path) -> None:
    """The first admin signs in at /api/v1/auth/login, which refuses shorter passwords;
    once the admin exists, an old .env keeping a short one is no obstacle."""
    data = tmp_path / "data"
    result = run(["serve", "--port", "1"], data, ADMIN_PASSWORD="tiny-pw")
    assert result.returncode == 2
    assert "Configuration error" in result.stderr
    assert "ADMIN_PASSWORD must be at least 8 characters" in result.stderr
    assert "tiny-pw" not in result.stderr + result.stdout
    assert run(["migrate"], data, ADMIN_PASSWORD="long-enough-pw").returncode == 0
    assert run(["migrate"], data, ADMIN_PASSWORD="tiny-pw").returncode == 0


def test_a_password_of_only_whitespace_is_refused_where_one_is_set(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run(["migrate"], data, ADMIN_PASSWORD=" " * 12)
    assert result.returncode == 2
    assert "ADMIN_PASSWORD must not be only whitespace" in result.stderr
    assert run(["migrate"], data, ADMIN_PASSWORD="long-enough-pw").returncode == 0
    for command in (["create", "blank@example.com"], ["set-password", "admin"]):
        result = run(["users", *command, "--password", " " * 12], data)
        assert result.returncode == 2
        assert "password must not be only whitespace" in result.stderr
    assert "blank@example.com" not in run(["users", "list"], data).stdout


def test_users_and_keys_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = run(
        ["users", "create", "ops@example.com", "--role", "manager", "--password", "long-enough-1"],
        data,
    )
    assert created.returncode == 0, created.stderr
    assert run(["users", "set-role", "ops@example.com", "admin"], data).returncode == 0
    assert (
        run(["users", "set-password", "ops", "--password", "another-pass-1"], data).returncode == 0
    )
    listed = run(["users", "list"], data)
    assert "ops@example.com" in listed.stdout and "admin" in listed.stdout

    key = run(["keys", "create", "ci", "--user", "ops@example.com"], data)
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip()
    assert secret.startswith("sk_live_")
    key_id = key.stderr.split("key ", 1)[1].split(" ", 1)[0]
    keys = run(["keys", "list"], data)
    assert "ci" in keys.stdout and secret not in keys.stdout
    assert key_id in keys.stdout  # whole, as `keys revoke` takes it

    token = run(["token", "--api-key", secret], data)
    assert token.returncode == 0, token.stderr
    assert token.stdout.count(".") == 2

    assert run(["keys", "revoke", key_id], data).returncode == 0
    assert run(["token", "--api-key", secret], data).returncode == 1


@pytest.mark.parametrize(
    "args",
    [
        ["users", "create", "bad@example.com", "--role", "root", "--password", "long-enough-1"],
        ["users", "create", "bad@example.com", "--password", "short"],
        ["users", "set-role", "nobody@example.com", "admin"],
        ["keys", "revoke", "does-not-exist"],
        ["token"],  # no --api-key and no API_KEY
    ],
)
def test_bad_cli_input_exits_non_zero(tmp_path: Path, args: list[str]) -> None:
    result = run(args, tmp_path / "data")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_token_without_a_key_names_what_is_missing(tmp_path: Path) -> None:
    result = run(["token"], tmp_path / "data")
    assert result.returncode == 2
    assert "No API key: pass --api-key or set API_KEY" in result.stderr


def test_config_masks_secrets(tmp_path: Path) -> None:
    result = run(
        ["config"],
        tmp_path / "data",
        API_KEY="very-secret-api-key",
        DATABASE_URL="postgresql://app:db-password@db/app",
        JWT_SECRET="a-jwt-secret-that-is-long-enough-0123456789",
    )
    assert result.returncode == 0, result.stderr
    for secret in ("very-secret-api-key", "db-password", "a-jwt-secret-that-is-long"):
        assert secret not in result.stdout
    assert "postgresql://app:****@db/app" in result.stdout


def test_config_takes_the_seeds_own_variable_names(tmp_path: Path) -> None:
    """Seed 002's .env (API_HOST, SECRET_KEY, REDIS_HOST, ...), also seed 000's Redis parts."""
    result = run(
        ["config"],
        tmp_path / "data",
        API_HOST="0.0.0.0",
        API_PORT="8123",
        SECRET_KEY="a-seed-002-secret-key-long-enough-0123456789",
        ACCESS_TOKEN_EXPIRE_MINUTES="45",
        JWT_ALGORITHM="HS256",
        REDIS_HOST="localhost",
        REDIS_PORT="6380",
        REDIS_DB="2",
        REDIS_PASSWORD="redis-pass-word",
    )
    assert result.returncode == 0, result.stderr
    shown = config_table(result.stdout)
    assert (shown["HOST"], shown["PORT"], shown["JWT_EXPIRES_IN"]) == ("0.0.0.0", "8123", "2700")
    assert shown["REDIS_URL"] == "redis://:****@localhost:6380/2"
    assert shown["JWT_SECRET"] == "****"
    assert "seed-002-secret" not in result.stdout and "redis-pass-word" not in result.stdout
    other = run(["config"], tmp_path / "data", JWT_ALGORITHM="RS256")
    assert other.returncode == 2 and "JWT_ALGORITHM: Input should be 'HS256'" in other.stderr


def test_an_empty_variable_is_unset_unless_empty_says_something(tmp_path: Path) -> None:
    """A compose file's `PORT: ${PORT}`, PORT unset, passes PORT="": the default, as from
    .env; an empty name gives way to its other one. Empty lists stay empty (no trusted
    proxy), an empty HOST binds every interface."""
    (tmp_path / ".env").write_text("JWT_EXPIRES_IN=\nSYSTEM_LOG_FILES=\n")
    result = run(
        ["config"],
        tmp_path / "data",
        PORT="",
        HOST="",
        ENVIRONMENT="",
        NODE_ENV="development",
        LOG_FORMAT="",
        REDIS_HOST="redis",
        REDIS_PORT="",
        TRUSTED_PROXIES="",
    )
    assert result.returncode == 0, result.stderr
    shown = config_table(result.stdout)
    assert (shown["PORT"], shown["ENVIRONMENT"], shown["LOG_FORMAT"]) == (
        "8000",
        "development",
        "auto (console)",
    )
    assert (shown["JWT_EXPIRES_IN"], shown["REDIS_URL"]) == ("1800", "redis://redis:6379/0")
    assert (shown["HOST"], shown["TRUSTED_PROXIES"], shown["SYSTEM_LOG_FILES"]) == ("", "[]", "[]")
    # A value of only whitespace (`PORT= ` with a stray space) is an empty one.
    blank = run(["config"], tmp_path / "data", PORT=" ", HOST="  ", LOG_LEVEL="\t", ENVIRONMENT=" ")
    assert blank.returncode == 0, blank.stderr
    shown = config_table(blank.stdout)
    assert (shown["PORT"], shown["HOST"], shown["LOG_LEVEL"]) == ("8000", "", "INFO")
    assert shown["ENVIRONMENT"] == "production"


def test_service_links_are_not_taken_for_the_seeds_names(tmp_path: Path) -> None:
    """Kubernetes (and Docker links) put `REDIS_PORT=tcp://…` and `API_PORT=tcp://…` into a
    pod beside Services named `redis` and `api`: no port of ours, and no error."""
    result = run(
        ["config"],
        tmp_path / "data",
        REDIS_URL="redis://redis:6379/0",
        REDIS_PORT="tcp://10.0.0.11:6379",
        API_PORT="tcp://10.0.0.7:8000",
    )
    assert result.returncode == 0, result.stderr
    shown = config_table(result.stdout)
    assert (shown["REDIS_URL"], shown["PORT"]) == ("redis://redis:6379/0", "8000")
    # Named by parts, the port as a link writes it; SMTP's link as well.
    by_parts = run(
        ["config"],
        tmp_path / "data",
        REDIS_HOST="redis",
        REDIS_PORT="tcp://10.0.0.9:6390",
        JOBS_INPROCESS_WORKERS="false",
        SMTP_PORT="tcp://10.0.0.5:2525",
    )
    assert by_parts.returncode == 0, by_parts.stderr
    shown = config_table(by_parts.stdout)
    assert (shown["REDIS_URL"], shown["SMTP_PORT"]) == ("redis://redis:6390/0", "2525")
    assert "Redis at redis:6390 (REDIS_HOST), jobs run by `vpsapi worker`" in by_parts.stderr


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"REDIS_HOST": "redis:6380"}, "REDIS_HOST takes a host name or address"),
        ({"REDIS_HOST": "redis", "REDIS_DB": "²"}, "REDIS_DB must be a database number"),
        ({"REDIS_HOST": "redis", "REDIS_PORT": "abc"}, "REDIS_PORT must be a port number"),
        (
            {"ACCESS_TOKEN_EXPIRE_MINUTES": "1000000000000"},
            "ACCESS_TOKEN_EXPIRE_MINUTES: Input should be less than or equal to 5259600",
        ),
        ({"JWT_REFRESH_REUSE_SECONDS": "99999999999999"}, "JWT_REFRESH_REUSE_SECONDS: Input"),
        ({"REDIS_HOST": "redis", "REDIS_DB": "[red]"}, "must be a database number, not '[red]'"),
    ],
)
def test_bad_seed_names_are_said_whole(tmp_path: Path, env: dict[str, str], said: str) -> None:
    """A clear refusal in one line, naming the variable, in full (rich once ate
    `[type=…]` as markup)."""
    result = run(["config"], tmp_path / "data", **env)
    assert result.returncode == 2
    assert result.stderr.startswith("Configuration error: ")
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert said in result.stderr


@pytest.mark.parametrize(
    ("spelled", "seconds"),
    [("30m", "1800"), ("1.5h", "5400"), ("2 days", "172800"), ("15min", "900"), ("10M", "600")],
)
def test_token_lifetimes_take_the_ms_librarys_spellings(
    tmp_path: Path, spelled: str, seconds: str
) -> None:
    """Seed 000 hands JWT_EXPIRES_IN to jsonwebtoken, which reads it with `ms`."""
    result = run(["config"], tmp_path / "data", JWT_EXPIRES_IN=spelled)
    assert result.returncode == 0, result.stderr
    assert config_table(result.stdout)["JWT_EXPIRES_IN"] == seconds


@pytest.mark.parametrize("spelled", ["1x", "0", "100ms", "-1h"])
def test_a_token_lifetime_that_is_none_is_refused(tmp_path: Path, spelled: str) -> None:
    result = run(["config"], tmp_path / "data", JWT_EXPIRES_IN=spelled)
    assert result.returncode == 2 and "Configuration error: JWT_EXPIRES_IN: " in result.stderr


def test_config_says_where_a_generated_jwt_secret_is(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert run(["migrate"], data).returncode == 0
    result = run(["config"], data)
    assert result.returncode == 0, result.stderr
    assert "JWT_SECRET" in result.stdout and "(generated, in" in result.stdout  # table wraps
    assert (data / "jwt-secret").read_text().strip() not in result.stdout


def test_config_says_what_settings_left_to_vpsapi_come_to(tmp_path: Path) -> None:
    """The camera passwords' key generated into DATA_DIR is said as the JWT secret's is;
    LOG_FORMAT=auto says what it comes to here, by the rule the logging follows."""
    data = tmp_path / "data"
    settings = Settings(data_dir=data, environment="test")
    ParamKeys.from_settings(settings)  # as the first camera's registration does
    result = run(["config"], data)
    assert result.returncode == 0, result.stderr
    shown = config_table(result.stdout)
    assert shown["DEVICE_PARAM_KEYS"] == f"(generated, in {settings.device_param_key_file})"
    assert settings.device_param_key_file.read_text().strip() not in result.stdout
    assert shown["LOG_FORMAT"] == "auto (json)"  # a pipe: JSON lines in production
    development = run(["config"], data, ENVIRONMENT="development")
    assert config_table(development.stdout)["LOG_FORMAT"] == "auto (console)"
    assert config_table(run(["config"], data, LOG_FORMAT="console").stdout)["LOG_FORMAT"] == (
        "console"
    )
    given = run(["config"], data, DEVICE_PARAM_KEYS="k2:an-own-long-random-value")
    assert config_table(given.stdout)["DEVICE_PARAM_KEYS"] == "****"


@pytest.mark.parametrize("level", ["bogus", "verbose", "10"])
def test_an_unknown_log_level_is_refused(tmp_path: Path, level: str) -> None:
    """As an unknown LOG_FORMAT is, rather than logging at INFO without a word."""
    result = run(["config"], tmp_path / "data", LOG_LEVEL=level)  # as `serve` reads them
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"Configuration error: LOG_LEVEL: {level!r} is no log level: use DEBUG, INFO, "
        "WARNING, ERROR or CRITICAL\n"
    )


def test_log_levels_are_taken_in_any_letter_case(tmp_path: Path) -> None:
    for level, shown in (("debug", "DEBUG"), ("Warn", "WARN"), (" error ", "ERROR")):
        result = run(["config"], tmp_path / "data", LOG_LEVEL=level)
        assert result.returncode == 0, result.stderr
        assert config_table(result.stdout)["LOG_LEVEL"] == shown


def test_serve_on_every_interface_says_an_address_to_open(tmp_path: Path) -> None:
    """HOST empty binds every interface: `serve` names an address a browser opens, and
    `vpsapi jobs`' default --url, made of HOST and PORT, reaches the server."""
    data, port = tmp_path / "data", free_port()
    env = cli_env(data, HOST="", PORT=str(port), API_KEY=SHARED_API_KEY)
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vpsapi", "serve"], env=env, stderr=log, cwd=tmp_path
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).is_success:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        said = log_path.read_text()
        assert (
            f"vpsapi listening on http://127.0.0.1:{port} and every other interface  "
            f"(docs: http://127.0.0.1:{port}/docs, 1 process, SQLite)"
        ) in said, said
        listed = run(["jobs", "list"], data, HOST="", PORT=str(port), API_KEY=SHARED_API_KEY)
        assert listed.returncode == 0, listed.stderr
    finally:
        process.terminate()
        process.wait(30)


def example_placeholders() -> dict[str, str]:
    """The `replace-with-…` values of the example configurations (deploy/, .env.example)."""
    found: dict[str, str] = {}
    for path in [*(ROOT / "deploy").rglob("*"), *ROOT.glob(".env*")]:
        if path.is_file() and path.suffix in (".example", ".yaml", ".yml", ".env"):
            for line in path.read_text().splitlines():
                name, sep, value = line.strip().partition(": " if ": " in line else "=")
                if sep and "replace-with" in value and re.fullmatch("[A-Z0-9_]+", name):
                    found[name] = value.strip().strip("\"'")
    return found


def test_the_example_configurations_placeholders_stop_a_production_start(
    tmp_path: Path,
) -> None:
    """This service's own secrets copied from deploy/ as they are: refused in one line
    naming each, never showing a value; said, not refused, in development. The
    credentials it hands to other services are theirs to check (a local SeaweedFS takes
    any, as installs from older examples ran): said in every environment, never refused."""
    placeholders = example_placeholders()
    assert {"JWT_SECRET", "API_KEY", "S3_SECRET_KEY", "DATABASE_URL"} <= placeholders.keys()
    # Inside a value too (a key id before the secret).
    placeholders["DEVICE_PARAM_KEYS"] = "k1:replace-with-output-of-openssl-rand-hex-32"
    own = {
        "JWT_SECRET": placeholders["JWT_SECRET"],
        "API_KEY": placeholders["API_KEY"],
        "DEVICE_PARAM_KEYS": placeholders["DEVICE_PARAM_KEYS"],
        "ADMIN_PASSWORD": "replace-with-the-first-admins-password",
        "DEVICE_API_TOKEN": "replace-with-the-cameras-token",
    }
    theirs = {name: value for name, value in placeholders.items() if name not in own}
    assert {"S3_ACCESS_KEY", "S3_SECRET_KEY", "DATABASE_URL"} <= theirs.keys()
    result = run(
        ["serve", "--port", "1"], tmp_path / "data", ENVIRONMENT="production", **own, **theirs
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Configuration error:")
    assert result.stderr.strip().count("\n") == 0
    for name, value in own.items():
        assert name in result.stderr
        assert value not in result.stderr
    assert not any(name in result.stderr for name in theirs)
    assert "openssl rand -hex 32" in result.stderr
    # An install from an older example: S3 keys left as placeholders, which its local
    # SeaweedFS without credentials accepted.
    upgraded = run(
        ["config"],
        tmp_path / "data",
        ENVIRONMENT="production",
        JWT_SECRET="an-own-long-random-value-0123456789",
        **theirs,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    notice = " ".join(upgraded.stderr.split())
    said = re.search(r"note: ([A-Z0-9_, ]+) left as in vpsapi's example configuration", notice)
    assert said and set(said.group(1).split(", ")) == theirs.keys()
    assert "passed on as they are to the services they are for" in notice
    # Plain dots, as a JSON log line keeps them: a grep of the journal finds the notice.
    assert "example configuration (`replace-with-...`)" in notice
    shown = upgraded.stdout + upgraded.stderr
    assert theirs["S3_SECRET_KEY"] not in shown and "database-password" not in shown
    development = run(
        ["config"],
        tmp_path / "data",
        ENVIRONMENT="development",
        JWT_SECRET=placeholders["JWT_SECRET"],
    )
    assert development.returncode == 0, development.stderr
    assert "note: JWT_SECRET left as in vpsapi's example configuration" in development.stderr
    assert "refused in production" in development.stderr
    assert placeholders["JWT_SECRET"] not in development.stdout + development.stderr
    # Seed 002's SECRET_KEY is this service's own only where it signs the tokens.
    signing = run(["config"], tmp_path / "data", SECRET_KEY=placeholders["JWT_SECRET"])
    assert signing.returncode == 2 and "SECRET_KEY left as" in signing.stderr
    another_programs = run(
        ["config"],
        tmp_path / "data",
        SECRET_KEY=placeholders["JWT_SECRET"],
        JWT_SECRET="an-own-long-random-value-0123456789",
    )
    assert another_programs.returncode == 0, another_programs.stderr
    assert "example configuration" not in another_programs.stderr


def test_serve_without_auto_migrate_needs_a_migrated_database(tmp_path: Path) -> None:
    """AUTO_MIGRATE=false leaves migrating to `vpsapi migrate`: a database it has not
    brought up to date is said in one line, not found out by the first query."""
    data = tmp_path / "data"
    started = time.monotonic()
    never = run(["serve", "--port", "1"], data, AUTO_MIGRATE="false")
    assert time.monotonic() - started < 30
    assert never.returncode == 2, never.stderr
    assert never.stderr.strip().count("\n") == 0, never.stderr
    assert "The database has no schema yet and AUTO_MIGRATE=false: run `vpsapi migrate`" in (
        never.stderr
    )
    assert run(["migrate"], data).returncode == 0
    assert run(["users", "list"], data, AUTO_MIGRATE="false").returncode == 0  # up to date
    with sqlite3.connect(data / SQLITE_FILE) as database:  # as before the newest jobs step
        database.execute("DROP INDEX ix_jobs_created")
        database.execute(
            "UPDATE alembic_version SET version_num = '0012_jobs_data_count'"
            " WHERE version_num = '0013_jobs_created_index'"
        )
    behind = run(["serve", "--port", "1"], data, AUTO_MIGRATE="false")
    assert behind.returncode == 2, behind.stderr
    assert behind.stderr.strip().count("\n") == 0, behind.stderr
    assert "older than this vpsapi (0013_jobs_created_index not applied)" in behind.stderr
    assert "run `vpsapi migrate`" in behind.stderr
    assert run(["migrate"], data).returncode == 0
    # A newer vpsapi's database starts as it is, as the downgrade refusal promises.
    with sqlite3.connect(data / SQLITE_FILE) as database:
        database.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    assert run(["users", "list"], data, AUTO_MIGRATE="false").returncode == 0


def test_config_shows_the_values_taken_for_empty_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run(["config"], data)
    assert result.returncode == 0, result.stderr
    shown = config_table(result.stdout)
    assert shown["BACKUP_DIR"] == str(data / "backups")
    assert shown["LOG_DIR"] == str(data / "logs")
    assert shown["ACME_WEBROOT"] == str(data / "acme-webroot")
    assert shown["JOBS_INPROCESS_WORKERS"] == "True"
    assert shown["DATABASE_URL"] == f"sqlite+aiosqlite:///{(data / SQLITE_FILE).resolve()}"
    scaled = run(["config"], data, REDIS_URL="redis://127.0.0.1:6379/0", BACKUP_DIR="/srv/b")
    shown = config_table(scaled.stdout)
    assert (shown["JOBS_INPROCESS_WORKERS"], shown["BACKUP_DIR"]) == ("False", "/srv/b")


def test_config_masks_a_password_only_where_there_is_one(tmp_path: Path) -> None:
    result = run(
        ["config"],
        tmp_path / "data",
        DATABASE_URL="postgresql://postgres@db/app",
        REDIS_URL="redis://redis:6379/0",
        SENTRY_DSN="https://dsn-key-0123@o1.ingest.sentry.io/42",
        DEVICE_API_TOKEN="camera-token-secret",
    )
    assert result.returncode == 0, result.stderr
    shown = config_table(result.stdout)
    assert shown["DATABASE_URL"] == "postgresql://postgres@db/app"
    assert shown["REDIS_URL"] == "redis://redis:6379/0"
    assert shown["SENTRY_DSN"] == "https://****@o1.ingest.sentry.io/42"  # its key is the user
    assert shown["DEVICE_API_TOKEN"] == "****"
    assert "dsn-key-0123" not in result.stdout and "camera-token-secret" not in result.stdout


def test_config_masks_the_secrets_inside_every_url(tmp_path: Path) -> None:
    """Any URL setting may hold a password, shown masked with its user name kept; a
    webhook's token is in its path, shown masked after the host."""
    result = run(
        ["config"],
        tmp_path / "data",
        NGINX_STATUS_URL="http://stats:hunter2@nginx/status",
        AI_OPENAI_COMPATIBLE_BASE_URL="http://u:pw123@llm:11434/v1",
        OPENAI_BASE_URL="https://api.example.com/v1",
        ALERT_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/slacktoken",
        PUSH_WEBHOOK_URL="https://relay.example.com/hooks?token=relaytoken",
    )
    assert result.returncode == 0, result.stderr
    shown = config_table(result.stdout)
    assert shown["NGINX_STATUS_URL"] == "http://stats:****@nginx/status"
    assert shown["AI_OPENAI_COMPATIBLE_BASE_URL"] == "http://u:****@llm:11434/v1"
    assert shown["OPENAI_BASE_URL"] == "https://api.example.com/v1"  # no password: as is
    assert shown["ALERT_WEBHOOK_URL"] == "https://hooks.slack.com/****"
    assert shown["PUSH_WEBHOOK_URL"] == "https://relay.example.com/****"
    for secret in ("hunter2", "pw123", "slacktoken", "relaytoken"):
        assert secret not in result.stdout + result.stderr


def test_scaled_out_state_kept_per_data_directory_is_said(tmp_path: Path) -> None:
    """With REDIS_URL, processes not sharing DATA_DIR each generate their own keys and
    store their own files: a notice (only) names what to set."""
    data = tmp_path / "data"
    result = run(["config"], data, REDIS_URL="redis://127.0.0.1:6379/0")
    assert result.returncode == 0, result.stderr
    notice = " ".join(result.stderr.split())
    assert "Redis is set (several processes may serve) and DATA_DIR holds" in notice
    assert "every process must share DATA_DIR, or set JWT_SECRET, DEVICE_PARAM_KEYS, " in notice
    assert "S3_ENDPOINT and S3_BUCKET, DATABASE_URL" in notice
    partly = run(
        ["config"],
        data,
        REDIS_URL="redis://127.0.0.1:6379/0",
        DATABASE_URL="postgresql://app@db/app",
        JWT_SECRET="an-own-long-random-value-0123456789",
        S3_ENDPOINT="http://s3:8333",
        S3_BUCKET="vpsapi",
    )
    assert "or set DEVICE_PARAM_KEYS" in " ".join(partly.stderr.split())
    shared = run(
        ["config"],
        data,
        REDIS_URL="redis://127.0.0.1:6379/0",
        DATABASE_URL="postgresql://app@db/app",
        JWT_SECRET="an-own-long-random-value-0123456789",
        DEVICE_PARAM_KEYS="k1:an-own-long-random-value",
        S3_ENDPOINT="http://s3:8333",
        S3_BUCKET="vpsapi",
    )
    assert shared.returncode == 0 and "DATA_DIR" not in shared.stderr
    assert "DATA_DIR" not in run(["config"], data).stderr  # one process: nothing to share


def test_auto_log_format_is_readable_on_a_terminal_unless_set(tmp_path: Path) -> None:
    """`make run` leaves LOG_FORMAT to the settings: a production start at a terminal logs
    readable lines, and LOG_FORMAT=json in .env is taken as written."""

    def started_line(env_file: str) -> str:
        (tmp_path / ".env").write_text(env_file)
        primary, secondary = pty.openpty()
        env = {k: v for k, v in os.environ.items() if k != "LOG_FORMAT"}
        env.update(
            {
                "PYTHONPATH": str(ROOT / "src"),
                "DATA_DIR": str(tmp_path / "data"),
                "LOG_LEVEL": "INFO",
            }
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "vpsapi", "serve", "--port", str(free_port())],
            env={k: v for k, v in env.items() if k != "ENVIRONMENT"},
            stdout=secondary,
            stderr=secondary,
            cwd=tmp_path,
        )
        os.close(secondary)
        output = b""
        try:
            deadline = time.monotonic() + 60
            while b"started" not in output and time.monotonic() < deadline:
                if select.select([primary], [], [], 1)[0]:
                    output += os.read(primary, 65536)
        finally:
            process.terminate()
            process.wait(30)
            os.close(primary)
        text = output.decode(errors="replace")
        return next(line for line in text.splitlines() if "started" in line)

    assert not started_line("").lstrip().startswith("{")
    assert '"event":"started"' in started_line("LOG_FORMAT=json\n")
