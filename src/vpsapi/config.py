"""Settings: the only place that reads the environment (and `.env`)."""

from __future__ import annotations

import logging
import os
import re
import secrets
import ssl
import sys
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

SECRET_FIELDS = frozenset(
    {
        "api_key",
        "jwt_secret",
        "secret_key",
        "admin_password",
        "sentry_dsn",
        "database_url",
        "redis_url",
        "redis_password",
        "device_param_keys",
        "openai_api_key",
        "anthropic_api_key",
        "groq_api_key",
        "ai_openai_compatible_api_key",
        "s3_secret_key",
        "push_webhook_secret",
        "mqtt_url",
        "smtp_password",
        "alert_webhook_url",
        "push_webhook_url",
    }
)
# The secret fields whose URL holds its secret after the host (a Slack-style webhook's
# token), not as a password.
SECRET_PATH_FIELDS = frozenset({"alert_webhook_url", "push_webhook_url"})

# The variables whose empty value says something: a list given empty is no item at all,
# JOURNALCTL_BIN empty skips the journal, CITYPULSE_MQTT_SHARED_GROUP empty subscribes
# plainly, HOST empty binds every interface (as the socket takes it: a compose file's
# `HOST: ${HOST}` then still serves the image's 0.0.0.0). Any other variable given empty
# is unset: `PORT: ${PORT}` in a compose file, with PORT unset, passes PORT="". A value of
# only whitespace is an empty one (a stray space after `PORT=`), save where it is refused.
EMPTY_MEANS_SOMETHING = frozenset(
    {
        "allowed_origins",
        "trusted_proxies",
        "alert_email_to",
        "system_log_files",
        "journalctl_bin",
        "citypulse_mqtt_shared_group",
        "host",
        "api_host",
    }
)
# A password of only whitespace is refused, as every password set is, not taken as unset
# (which would generate one): the operator meant to set it.
WHITESPACE_IS_A_VALUE = frozenset({"admin_password"})

SQLITE_FILE = "vpsapi.db"  # the embedded database, inside DATA_DIR

# The `ms` library's spellings (seed 000 hands JWT_EXPIRES_IN to jsonwebtoken, which reads
# it with `ms`): `30m`, `1.5h`, `2 days`, `15min`, `10M`; a bare number is seconds here.
_DURATION = re.compile(
    r"^\s*(\d*\.?\d+)\s*(ms|msecs?|milliseconds?|s|secs?|seconds?|m|mins?|minutes?"
    r"|h|hrs?|hours?|d|days?|w|weeks?|y|yrs?|years?)?\s*$",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31557600}


def parse_duration(value: str | int) -> int:
    """Seconds of `30m`, `1.5h`, `2 days`, `900` (seconds), as seed 000's JWT_EXPIRES_IN."""
    if isinstance(value, int):
        return value
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"invalid duration {value!r}: use e.g. 30m, 1.5h, 2 days, 900")
    unit = (match.group(2) or "s").lower()
    short = "ms" if unit.startswith(("ms", "milli")) else unit[0]
    return round(float(match.group(1)) * _UNIT_SECONDS[short])


# Ten years: a longer token lifetime is a typo (and beyond what a date can hold, a 500).
MAX_TOKEN_LIFETIME = 10 * 31557600

# The example secrets of the seeds' .env files: known to anyone who read them.
SEED_EXAMPLE_SECRETS = frozenset(
    {
        "your-secret-key",
        "generate-a-very-secure-random-string-here",
        "your-super-secret-jwt-key-min-32-chars",
        "your-super-secret-refresh-key-min-32-chars",
        "your-strong-production-jwt-secret",
        "shared-secret-key-with-vercel-team",
    }
)


# How the example configurations in deploy/ spell a value the operator must supply (also
# inside one: `kid:replace-with-...` for DEVICE_PARAM_KEYS, a URL's password).
PLACEHOLDER = "replace-with"

# The secrets this service checks or seals with: left as deploy/'s published placeholder,
# anyone can sign a token, present the key or open the cameras' passwords, so a production
# start refuses them. The credentials it presents to other services (a database or S3
# password, an AI provider's key, the push webhook's signing secret) are theirs to check:
# a local SeaweedFS without credentials takes any (installs from older deploy/ examples
# ran so), so those are said only.
OWN_SECRETS = frozenset(
    {"jwt_secret", "api_key", "device_param_keys", "admin_password", "device_api_token"}
)


class SettingsError(RuntimeError):
    """Raised when the configuration cannot be used; the message says what to change."""


DEFAULT_SSL_CERT_DIR = Path("/etc/ssl/vpsapi")


def _is_openssl_ca_store(directory: Path) -> bool:
    builtin = ssl.get_default_verify_paths().openssl_capath
    return bool(builtin) and directory.resolve() == Path(builtin).resolve()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,  # a refused value may be a secret
    )

    environment: Literal["development", "production", "test"] = Field(
        default="production", validation_alias=AliasChoices("ENVIRONMENT", "NODE_ENV")
    )
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "API_HOST"))
    port: int = 8000
    # Seed 002's name for PORT, taken when PORT is unset and it is a number: Kubernetes
    # puts `API_PORT=tcp://10.0.0.7:8000` into every pod beside a Service named `api`.
    api_port: str = ""
    data_dir: Path = Path("./data")
    database_url: str = ""
    # PostgreSQL connections per process. Connections beyond the pool are opened for a
    # burst and closed after it (a new server process each time), so the pool itself is
    # sized for steady load; keep processes x (pool + overflow) under max_connections.
    database_pool_size: int = Field(default=15, ge=1)
    database_max_overflow: int = Field(default=5, ge=0)
    # How long a request waits for a free connection before it is answered 503 (busy).
    database_pool_timeout: float = Field(default=5.0, gt=0)
    redis_url: str = ""
    # Seeds 000 and 002 name the server by parts: taken when REDIS_URL is unset and
    # REDIS_HOST is set. Read as text, and only then: Kubernetes puts
    # `REDIS_PORT=tcp://10.0.0.9:6379` into every pod beside a Service named `redis`.
    redis_host: str = ""
    redis_port: str = "6379"
    redis_db: str = "0"
    redis_password: SecretStr | None = None
    redis_prefix: str = "vpsapi"
    auto_migrate: bool = True

    api_key: SecretStr | None = None
    jwt_secret: SecretStr | None = None
    # Seed 002's name for JWT_SECRET, used when JWT_SECRET is unset (and said so at start).
    secret_key: SecretStr | None = None
    # Tokens are signed with HS256 only; seed 002 names the algorithm, so it is checked.
    jwt_algorithm: Literal["HS256"] = "HS256"
    jwt_issuer: str = "vps-api"
    jwt_expires_in: int = Field(default=1800, ge=1, le=MAX_TOKEN_LIFETIME)
    # Seed 002's way to set JWT_EXPIRES_IN, in minutes (JWT_EXPIRES_IN wins when both are).
    access_token_expire_minutes: int | None = Field(default=None, ge=1, le=MAX_TOKEN_LIFETIME // 60)
    jwt_refresh_expires_in: int = Field(default=7 * 86400, ge=1, le=MAX_TOKEN_LIFETIME)
    # A refresh token presented again this soon after its rotation (a retry after a lost
    # answer, two tabs refreshing at once) gets the login's current tokens instead of
    # revoking the login as stolen; 0 treats every reuse as theft.
    jwt_refresh_reuse_seconds: int = Field(default=30, ge=0, le=MAX_TOKEN_LIFETIME)
    # Logins and API keys ended (logged out, revoked, expired) longer than this many days
    # ago are deleted by an hourly task (0 = keep forever).
    auth_retention_days: int = Field(default=30, ge=0, le=36500)

    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"]
    )
    max_body_size: int = 10 * 1024 * 1024

    rate_limit_enabled: bool = Field(
        default=True,
        validation_alias=AliasChoices("RATE_LIMIT_ENABLED", "RATE_LIMITING_ENABLED"),  # seed 004
    )
    rate_limit_default: str = "100/minute"
    rate_limit_auth: str = "5/15minutes"
    rate_limit_search: str = "60/minute"
    rate_limit_ai: str = "100/15minutes"
    rate_limit_swarm: str = "50/15minutes"
    rate_limit_citypulse: str = "200/15minutes"
    # ---- devices: the seed-003 app polls /api/hello/query every 2 s during setup
    rate_limit_devices: str = "600/minute"
    # "kid:secret,kid:secret": the first encrypts service params, all decrypt (rotation).
    # Unset: one key is generated into DATA_DIR/device-param-key.
    device_param_keys: SecretStr | None = None
    # A device is shown offline when no heartbeat/registration arrived for this long.
    device_offline_after: int = 300
    # When set, cameras must send `X-Device-Token` on register and heartbeat.
    device_api_token: SecretStr | None = None
    # Seconds a camera's presigned upload URL stays valid; unconfirmed uploads are
    # deleted by the hourly cleanup after that (plus a grace period).
    cloud_upload_url_ttl: int = Field(default=900, ge=1, le=7 * 86400)
    # Seconds a playback URL from /api/cloud/videos/urls stays valid (seed: 1 hour).
    cloud_video_url_ttl: int = Field(default=3600, ge=1, le=7 * 86400)
    # Clips (objects and rows) stored longer than this many days are deleted by the
    # hourly cleanup; 0 keeps them until their device is deleted.
    cloud_video_retention_days: int = Field(default=0, ge=0)
    # Push delivery. Each provider is active when its settings are present; a token whose
    # platform has no configured provider goes to the webhook (when set).
    push_webhook_url: str = ""
    # Optional: signs webhook bodies (`X-Vpsapi-Signature: sha256=<hmac>`).
    push_webhook_secret: SecretStr | None = None
    # Path of a Firebase service-account JSON file (FCM HTTP v1).
    fcm_credentials_file: Path | None = None
    fcm_project_id: str = ""  # default: project_id of the service-account file
    fcm_base_url: str = "https://fcm.googleapis.com"
    # APNs token-based auth: the .p8 key file, its key id, the team id, the app's topic.
    apns_key_file: Path | None = None
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_topic: str = ""
    apns_base_url: str = "https://api.push.apple.com"
    rate_limit_window_ms: int | None = None
    rate_limit_max_requests: int | None = Field(
        default=None,
        validation_alias=AliasChoices("RATE_LIMIT_MAX_REQUESTS", "RATE_LIMIT_MAX"),  # 000, 001
    )

    admin_email: str = "admin@example.com"
    admin_username: str = "admin"
    admin_password: SecretStr | None = None

    # ---- object storage: S3-compatible when S3_ENDPOINT and S3_BUCKET are set,
    # else files under DATA_DIR/objects served by the app through signed URLs.
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    # The URL clients reach this service at (e.g. https://api.example.com), for the
    # signed object URLs of the embedded storage; unset: taken from each request.
    public_url: str = ""

    # ---- jobs
    jobs_workers: int = Field(default=4, ge=1, le=256)
    # None: in-process workers on the embedded default, `vpsapi worker` when REDIS_URL is set.
    jobs_inprocess_workers: bool | None = None
    job_lease_seconds: int = Field(default=30, ge=1)
    job_max_attempts: int = Field(default=3, ge=1, le=20)
    job_backoff_base_seconds: float = Field(default=2.0, ge=0)
    job_timeout_seconds: int = Field(default=300, ge=1)
    job_retention_days: int = Field(default=7, ge=1)
    job_result_compress_over: int = Field(default=64 * 1024, ge=0)

    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    # FastAPI's native OpenTelemetry (spans, metrics, logs through the globally configured
    # providers). Off by default: checking for providers costs every request.
    otel_enabled: bool = False
    sentry_dsn: SecretStr | None = None
    shutdown_timeout: int = 30

    # ---- ops (seed 002): the nginx this service manages
    nginx_bin: str = "nginx"
    # Empty: nginx's compiled-in prefix and main config (/etc/nginx/nginx.conf on Debian).
    nginx_prefix: str = ""
    nginx_main_conf: str = ""
    # Managed site and upstream files are written here; the main config must include
    # `<NGINX_CONF_DIR>/*.conf` in its http block (Debian's conf.d already is).
    nginx_conf_dir: Path = Path("/etc/nginx/conf.d")
    nginx_log_dir: Path = Path("/var/log/nginx")
    # Empty: `nginx [-p prefix] [-c conf] -s reload`; restart: `systemctl restart nginx`.
    nginx_reload_cmd: str = ""
    nginx_restart_cmd: str = ""
    # stub_status URL for connection/request figures, e.g. http://127.0.0.1/nginx_status
    nginx_status_url: str = ""
    ssl_cert_dir: Path = DEFAULT_SSL_CERT_DIR
    default_ssl_cert: str = ""
    default_ssl_key: str = ""
    letsencrypt_email: str = ""
    acme_directory_url: str = "https://acme-v02.api.letsencrypt.org/directory"
    # Extra CA bundle to trust for the ACME directory (a private CA such as pebble's).
    acme_ca_bundle: str = ""
    cert_renew_before_days: int = Field(default=30, ge=1)
    # HTTP-01: challenge files go under ACME_WEBROOT (empty: DATA_DIR/acme-webroot; nginx's
    # worker user must be able to read it) and a temporary managed server block on
    # ACME_HTTP_PORT (where the CA connects: 80 in production) serves them.
    acme_webroot: Path | None = None
    acme_http_port: int = Field(default=80, ge=1, le=65535)
    # How often the scheduled certificate renewal runs (seconds; daily).
    cert_renew_interval: float = Field(default=86400.0, gt=0)
    # Empty: DATA_DIR/backups.
    backup_dir: Path | None = None
    backup_keep_last: int = Field(default=10, ge=1)
    backup_keep_days: int = Field(default=30, ge=1)
    # Where pg_dump/pg_restore/psql are (PostgreSQL backups); empty: found on PATH.
    pg_bin_dir: str = ""
    # How often the retention policy is applied to BACKUP_DIR (seconds; daily).
    backup_retention_interval: float = Field(default=86400.0, gt=0)
    # Empty: DATA_DIR/logs. Structured streams: application, audit, performance, security.
    log_dir: Path | None = None
    log_retention_days: int = Field(default=30, ge=1)
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Write the streams to files at all (the console output is unaffected).
    log_to_files: bool = True
    # Rotated files kept per stream: application.log.1 … .N (cleanup may remove older ones).
    log_backup_count: int = Field(default=5, ge=1, le=100)
    # How often each server applies the retention policy when its auto_cleanup is on.
    log_cleanup_interval: float = Field(default=3600.0, gt=0)
    # GET /api/logs/system: the journal first (empty: skip it), then the first of these files.
    journalctl_bin: str = "journalctl"
    system_log_files: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/var/log/syslog", "/var/log/messages"]
    )
    metrics_interval: float = Field(default=10.0, gt=0)
    metrics_retention_days: int = Field(default=30, ge=1)
    backend_check_interval: float = Field(default=30.0, gt=0)
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = "vpsapi@localhost"
    smtp_starttls: bool = False
    alert_email_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    alert_webhook_url: str = ""

    # ---- citypulse
    # The seed's feature switches: CITYPULSE_ENABLED=false answers 503 on /api/v1/citypulse
    # and runs no MQTT subscriber, WEBSOCKET_ENABLED=false refuses Socket.IO connections on
    # /ws, AI_MODELS_ENABLED=false answers 503 on /api/v1/ai and /api/v1/swarm.
    citypulse_enabled: bool = True
    websocket_enabled: bool = True
    ai_models_enabled: bool = True
    citypulse_tariff_per_kwh: float = Field(default=0.30, ge=0)
    citypulse_currency: str = "EUR"

    # ---- citypulse AI chat and swarm: a provider is usable once its key (or, for the
    # OpenAI-compatible endpoint, its base URL) is set. Base URLs end before the
    # endpoint path: OpenAI-style ones include `/v1`, Anthropic's does not.
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    groq_api_key: SecretStr | None = None
    groq_base_url: str = "https://api.groq.com/openai/v1"
    # A local Ollama (`http://127.0.0.1:11434/v1`) or vLLM server; the key is optional.
    ai_openai_compatible_base_url: str = ""
    ai_openai_compatible_api_key: SecretStr | None = None
    # Provider used when a request names none; empty: the first configured one.
    ai_default_provider: Literal["", "openai", "anthropic", "groq", "openai-compatible"] = ""
    # Model used when a request names none; empty: the provider's own default
    # (citypulse/ai/providers.DEFAULT_MODELS), and a request to one without names one.
    ai_default_model: str = ""
    # Anthropic requires max_tokens; used when a request does not set it.
    ai_default_max_tokens: int = Field(default=1024, ge=1, le=200_000)
    # Whole call without streaming; longest silence between chunks when streaming.
    ai_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # MQTT ingestion: unset = no subscriber; mqtt://[user:pass@]host[:port] (mqtts:// for TLS).
    mqtt_url: str = ""
    citypulse_mqtt_topic_prefix: str = "citypulse"
    # MQTT v5 shared-subscription group: the broker hands each message to one of the serve
    # processes in the group, so a reading is stored once. Empty = plain subscription.
    citypulse_mqtt_shared_group: str = "vpsapi"
    # Analytics answers are cached this long (0 = off); new readings drop a building's entries.
    citypulse_analytics_cache_seconds: int = Field(default=300, ge=0)
    # Readings older than this many days are deleted by a periodic task (0 = keep forever).
    citypulse_readings_retention_days: int = Field(default=0, ge=0)
    citypulse_retention_interval_seconds: int = Field(default=3600, ge=1)
    workers: int = 1

    @field_validator(
        "allowed_origins", "trusted_proxies", "alert_email_to", "system_log_files", mode="before"
    )
    @classmethod
    def _split_csv(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]
        return value

    @field_validator("smtp_port", "acme_http_port", mode="before")
    @classmethod
    def _service_link_port(cls, value: Any, info: ValidationInfo) -> Any:
        # A Service named `smtp` puts `SMTP_PORT=tcp://10.0.0.5:25` into a pod beside it.
        if isinstance(value, str) and value.strip().startswith("tcp://"):
            return _port_number(value, (info.field_name or "").upper())
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, so that a placeholder (seed 001's `https://xxxxx@sentry.io/xxxxx`)
        # is a configuration error at start, not a traceback once the server is up.
        if value is None or not value.get_secret_value().strip():
            return None  # `SENTRY_DSN=` in an env file: no Sentry
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            Dsn(value.get_secret_value())
        except BadDsn as exc:
            raise ValueError(f"not a Sentry DSN ({exc})") from None
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        # The names the logging module knows, in any letter case (WARN and FATAL too):
        # another would log at INFO without a word.
        name = value.strip().upper()
        if name not in logging.getLevelNamesMapping():
            raise ValueError(
                f"{value!r} is no log level: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        return name

    @field_validator("jwt_expires_in", "jwt_refresh_expires_in", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_duration(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # pydantic-settings' env_ignore_empty passes over every empty variable; this, all but
        # EMPTY_MEANS_SOMETHING (names as read: lower case). Dropped before a value is looked
        # up, an empty variable is as if absent: a .env value or another name (NODE_ENV for
        # an empty ENVIRONMENT) is taken instead.
        for source in (env_settings, dotenv_settings):
            if isinstance(source, EnvSettingsSource):  # the .env source is one too
                source.env_vars = {
                    name: value
                    for name, value in map(_blank_as_empty, source.env_vars.items())
                    if value != "" or name in EMPTY_MEANS_SOMETHING
                }
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    _notices: list[str] = PrivateAttr(default_factory=list)
    # Which variable the JWT secret came from, for the messages about it.
    _jwt_secret_name: str = PrivateAttr(default="JWT_SECRET")

    @property
    def notices(self) -> list[str]:
        """What to know of the settings at start (logged by `serve`, shown by `config`):
        values not taken as given and why, a name taken for another, an unsafe value."""
        return self._notices

    @model_validator(mode="after")
    def _own_certificate_dir(self) -> Settings:
        # OpenSSL reads SSL_CERT_DIR too, and some environments set it to the system's CA
        # store for OpenSSL's sake. That directory holds no certificate of ours, and taking
        # it would list every CA as a domain, back it up and restore into it.
        if _is_openssl_ca_store(self.ssl_cert_dir):
            self._notices.append(
                f"SSL_CERT_DIR={self.ssl_cert_dir} is OpenSSL's CA store, not a directory "
                f"of certificates to manage: {DEFAULT_SSL_CERT_DIR} is used instead (give "
                "vpsapi another SSL_CERT_DIR to choose where)"
            )
            self.ssl_cert_dir = DEFAULT_SSL_CERT_DIR
        return self

    @model_validator(mode="after")
    def _legacy_rate_limit(self) -> Settings:
        # Seed 000 configures the default tier as a window in ms and a count; either alone
        # takes seed 000's default for the other (`|| 15 * 60 * 1000`, `|| 100`).
        if self.rate_limit_max_requests is not None or self.rate_limit_window_ms is not None:
            window_s = max(1, (self.rate_limit_window_ms or 900_000) // 1000)
            amount = self.rate_limit_max_requests or 100
            self.rate_limit_default = f"{amount}/{window_s}seconds"
        return self

    @model_validator(mode="after")
    def _seed_002_names(self) -> Settings:
        if not self.redis_url and self.redis_host:
            # The seeds that name Redis by parts run their job worker inside the one server
            # process (seed 000's `new Worker(...)` in server.js): so does this setup.
            if self.jobs_inprocess_workers is None:
                self.jobs_inprocess_workers = True
            password = self.redis_password.get_secret_value() if self.redis_password else ""
            credentials = f":{quote(password, safe='')}@" if password else ""
            host = self.redis_host.strip()
            if host.count(":") == 1:
                raise ValueError(
                    "REDIS_HOST takes a host name or address: the port goes in REDIS_PORT"
                )
            if ":" in host and not host.startswith("["):  # an IPv6 address
                host = f"[{host}]"
            port = _port_number(self.redis_port, "REDIS_PORT")
            if not _DIGITS.fullmatch(self.redis_db.strip()):
                raise ValueError(f"REDIS_DB must be a database number, not {self.redis_db!r}")
            self.redis_url = f"redis://{credentials}{host}:{port}/{int(self.redis_db)}"
            where = "inside serve" if self.jobs_inprocess_workers else "by `vpsapi worker`"
            self._notices.append(f"Redis at {host}:{port} (REDIS_HOST), jobs run {where}")
        if "port" not in self.model_fields_set and _DIGITS.fullmatch(self.api_port.strip()):
            self.port = _port_number(self.api_port, "API_PORT")
        if self.access_token_expire_minutes and "jwt_expires_in" not in self.model_fields_set:
            self.jwt_expires_in = self.access_token_expire_minutes * 60
        # SECRET_KEY only when it is the one read (else it may be another program's).
        read = ("jwt_secret", "api_key") if self.jwt_secret else ("secret_key", "api_key")
        for name in read:
            # Warned, not refused: a test bench built from a seed may use them on purpose.
            secret: SecretStr | None = getattr(self, name)
            if secret is not None and secret.get_secret_value().strip() in SEED_EXAMPLE_SECRETS:
                self._notices.append(
                    f"{name.upper()} is the example value of a seed's .env, known to anyone "
                    "who read it: set a long random value (openssl rand -hex 32)"
                )
        if self.jwt_secret is None and self.secret_key is not None:
            if len(self.secret_key.get_secret_value()) < 32 and not self.is_development:
                # A name other programs use too (Django, Flask), read as a courtesy: a value
                # too weak to sign with is passed over, where JWT_SECRET's stops the start.
                self._notices.append(
                    "SECRET_KEY is shorter than 32 characters: not used, tokens are signed "
                    "with a secret generated into DATA_DIR, one per data directory (set "
                    "JWT_SECRET, the same on every process, e.g. `openssl rand -hex 32`)"
                )
            else:
                self.jwt_secret = self.secret_key
                self._jwt_secret_name = "SECRET_KEY"
                self._notices.append("tokens are signed with SECRET_KEY (JWT_SECRET is unset)")
        return self

    @model_validator(mode="after")
    def _placeholders(self) -> Settings:
        # After _seed_002_names: JWT_SECRET may hold SECRET_KEY's value by then, and is
        # named for where it came from; a SECRET_KEY not read may be another program's.
        left = [
            name
            for name in type(self).model_fields
            if name != "secret_key" and _is_placeholder(getattr(self, name))
        ]
        own = [
            self._jwt_secret_name if name == "jwt_secret" else name.upper()
            for name in left
            if name in OWN_SECRETS
        ]
        others = [name.upper() for name in left if name not in OWN_SECRETS]
        # Three dots, not an ellipsis: JSON log lines escape that (\u2026), and operators
        # grep the journal for what they read here.
        example = "left as in vpsapi's example configuration (`replace-with-...`)"
        if others:
            self._notices.append(
                f"{', '.join(others)} {example}: passed on as they are to the services they "
                "are for; set what those expect"
            )
        if own:
            said = f"{', '.join(own)} {example}: set values of your own (`openssl rand -hex 32`)"
            if not self.is_development:
                raise SettingsError(said)  # not a ValidationError: one line, no value shown
            self._notices.append(f"{said}; refused in production")
        return self

    @model_validator(mode="after")
    def _per_directory_state(self) -> Settings:
        # REDIS_URL is how processes find each other. What is generated into DATA_DIR
        # when unset is then one per data directory, and processes not sharing theirs
        # disagree: a token, a camera's password or a signed upload URL made by one is
        # refused by another.
        if not self.redis_url:
            return self
        unset = [
            (what, names)
            for what, names, missing in (
                ("the JWT signing key", "JWT_SECRET", self.jwt_secret is None),
                (
                    "the key sealing camera passwords",
                    "DEVICE_PARAM_KEYS",
                    self.device_param_keys is None,
                ),
                (
                    "stored objects and the key signing their URLs",
                    "S3_ENDPOINT and S3_BUCKET",
                    not (self.s3_endpoint and self.s3_bucket),
                ),
                ("the SQLite database", "DATABASE_URL", not self.database_url),
            )
            if missing
        ]
        if unset:
            self._notices.append(
                "Redis is set (several processes may serve) and DATA_DIR holds "
                f"{', '.join(what for what, _ in unset)}, one per data directory: every "
                f"process must share DATA_DIR, or set {', '.join(name for _, name in unset)}"
            )
        return self

    @property
    def is_development(self) -> bool:
        return self.environment in ("development", "test")

    @cached_property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql+asyncpg://" + url.removeprefix("postgres://")
            elif url.startswith("postgresql://"):
                url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
            elif url.startswith("sqlite:///"):
                url = "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
            return url
        return f"sqlite+aiosqlite:///{(self.data_dir / SQLITE_FILE).resolve()}"

    @property
    def run_jobs_in_process(self) -> bool:
        if self.jobs_inprocess_workers is None:
            return not self.redis_url
        return self.jobs_inprocess_workers

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_backup_dir(self) -> Path:
        return self.backup_dir or self.data_dir / "backups"

    @property
    def effective_acme_webroot(self) -> Path:
        return self.acme_webroot or self.data_dir / "acme-webroot"

    @property
    def effective_log_dir(self) -> Path:
        return self.log_dir or self.data_dir / "logs"

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        """What the console logs as. auto: JSON lines for what a program reads (a journal,
        a container's log, a pipe), the console renderer for a person at a terminal
        (`make run`) or in development."""
        if self.log_format != "auto":
            return self.log_format
        return "console" if self.is_development or sys.stderr.isatty() else "json"

    def ensure_data_dir(self) -> Path:
        # Owner only when we create it: it holds the secrets and the embedded database
        # (password and key hashes). An existing directory keeps the mode it was given.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.data_dir

    def jwt_signing_key(self) -> str:
        """The JWT secret; generated once into DATA_DIR/jwt-secret (0600) when unset."""
        if self.jwt_secret is not None:
            value = self.jwt_secret.get_secret_value()
            if len(value) < 32 and not self.is_development:
                raise SettingsError(
                    f"{self._jwt_secret_name} is shorter than 32 characters. Use a long random "
                    "value, e.g. `openssl rand -hex 32`, or unset it to have one generated."
                )
            return value
        self.ensure_data_dir()
        return read_or_create_secret(self.jwt_secret_file)

    @property
    def jwt_secret_file(self) -> Path:
        """Where a JWT secret generated for an unset JWT_SECRET is kept."""
        return self.data_dir / "jwt-secret"

    @property
    def device_param_key_file(self) -> Path:
        """Where the key generated for an unset DEVICE_PARAM_KEYS is kept."""
        return self.data_dir / "device-param-key"

    def masked(self) -> dict[str, Any]:
        """Effective settings for display, secrets masked."""
        # Settings left empty take a value made of others: the one taken is shown.
        derived: dict[str, Any] = {
            "database_url": self.effective_database_url,
            "backup_dir": self.effective_backup_dir,
            "log_dir": self.effective_log_dir,
            "acme_webroot": self.effective_acme_webroot,
            "jobs_inprocess_workers": self.run_jobs_in_process,
        }
        # Secrets left unset are generated into DATA_DIR on first use: where, once they are.
        generated = {
            "jwt_secret": self.jwt_secret_file,
            "device_param_keys": self.device_param_key_file,
        }
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value in (None, "") and name in derived:
                value = derived[name]
            secret = name in SECRET_FIELDS or isinstance(value, SecretStr)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if secret and value:
                # A Sentry DSN's key is where a URL's user name goes.
                value = _mask(
                    str(value),
                    user_is_secret=name == "sentry_dsn",
                    path_is_secret=name in SECRET_PATH_FIELDS,
                )
            elif isinstance(value, str) and "://" in value:
                # Any URL may hold a password (NGINX_STATUS_URL, an AI provider's base URL).
                value = _mask(value)
            elif name in generated and generated[name].is_file():
                value = f"(generated, in {generated[name]})"
            elif name == "log_format" and value == "auto":
                value = f"auto ({self.effective_log_format})"
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        return shown


# The addresses that bind every interface, and the one this machine reaches them at.
EVERY_INTERFACE = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def local_url(host: str, port: int) -> str:
    """Where this machine reaches `vpsapi serve` bound to `host` and `port`: one bound on
    every interface (HOST empty, 0.0.0.0, ::) at the loopback address."""
    address = EVERY_INTERFACE.get(host, host)
    if ":" in address and not address.startswith("["):  # an IPv6 address
        address = f"[{address}]"
    return f"http://{address}:{port}"


def _blank_as_empty(variable: tuple[str, str | None]) -> tuple[str, str | None]:
    name, value = variable
    if value is not None and not value.strip() and name not in WHITESPACE_IS_A_VALUE:
        return name, ""
    return variable


def _port_number(value: str, name: str) -> int:
    """A port given as a number, or as Docker links and Kubernetes write one
    (`tcp://10.0.0.9:6379`)."""
    text = value.strip()
    text = text.rsplit(":", 1)[-1] if text.startswith("tcp://") else text
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{name} must be a port number, not {value!r}")
    return int(text)


_DIGITS = re.compile(r"[0-9]+")


def _mask(value: str, *, user_is_secret: bool = False, path_is_secret: bool = False) -> str:
    """A URL with its secrets masked: the password it holds (none where it holds none),
    all of its user info where the user name is a key (a Sentry DSN), all after the host
    where the path holds a token (a webhook's); any other secret whole. Cut at the last
    `@`, as a password written unescaped may hold `/`, `?` or `#`: a path holding an `@`
    is masked with it rather than a password shown."""
    if "://" not in value:
        return "****"
    scheme, rest = value.split("://", 1)
    credentials, at, host = rest.rpartition("@")
    user, _, password = credentials.partition(":")
    if path_is_secret:
        end = min((i for i in map(host.find, "/?#") if i >= 0), default=len(host))
        if host[end:].strip("/?#"):
            host = f"{host[: end + 1]}****"
    if credentials and (user_is_secret or path_is_secret):
        credentials = "****"
    elif password:
        credentials = f"{user}:****"
    return f"{scheme}://{credentials}{at}{host}"


def _is_placeholder(value: Any) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return isinstance(value, str) and PLACEHOLDER in value


def read_or_create_secret(path: Path, nbytes: int = 48) -> str:
    """Read a secret kept in a file, creating it (mode 0600) on first use.

    The file is written under a temporary name and linked into place, so a process
    starting at the same moment sees either no file or the whole secret."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = secrets.token_urlsafe(nbytes)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    try:
        os.link(staging, path)
    except FileExistsError:  # another process won: use its secret
        value = path.read_text().strip()
    finally:
        staging.unlink()
    return value


def get_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
