"""The deployment files users copy: nginx accepts the site, the fail2ban filter
matches the app's real security log lines, the YAML manifests are complete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from support import ROOT, free_port, render_nginx_site
from vpsapi.config import PLACEHOLDER, Settings
from vpsapi.core.storage import create_storage
from vpsapi.devices.params import ParamKeys

DEPLOY = ROOT / "deploy"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (CI installs it)")
def test_nginx_site_passes_nginx_t(tmp_path: Path) -> None:
    conf = render_nginx_site(tmp_path, ["127.0.0.1:8000", "127.0.0.1:8001"], free_port())
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _filter_patterns() -> list[re.Pattern[str]]:
    text = (DEPLOY / "fail2ban" / "filter.d" / "vpsapi.conf").read_text()
    block = text.split("failregex =", 1)[1].split("ignoreregex", 1)[0]
    return [
        re.compile(line.strip().replace("<HOST>", r"(?P<host>[0-9a-fA-F:.]+)"))
        for line in block.splitlines()
        if line.strip()
    ]


def test_fail2ban_filter_matches_real_log_lines(settings_factory, server_factory) -> None:
    server = server_factory(settings_factory(), LOG_LEVEL="INFO")
    httpx.post(server.base_url + "/api/auth/token", headers={"X-API-Key": "wrong"})
    httpx.post(
        server.base_url + "/api/v1/auth/login",
        json={"email": "admin@example.com", "password": "wrong-password"},
    )
    server.stop()
    lines = server.log_path.read_text().splitlines()
    security = [s for s in lines if "Invalid API key attempt" in s or "login_failed" in s]
    assert len(security) >= 2
    patterns = _filter_patterns()
    for line in security:
        hosts = {m.group("host") for p in patterns if (m := p.match(line))}
        assert hosts == {"127.0.0.1"}, line
    assert not any(p.match(s) for p in patterns for s in lines if "login_succeeded" in s)
    # A line of an older version (a space after each colon), still in the journal scanned.
    older = '{"ip": "203.0.113.7", "event": "login_failed", "level": "warning"}'
    matches = [match for pattern in patterns if (match := pattern.match(older))]
    assert {match.group("host") for match in matches} == {"203.0.113.7"}


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_kubernetes_manifests() -> None:
    docs = [d for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in _documents(f)]
    kinds = {d["kind"]: d for d in docs}
    assert {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "ConfigMap",
        "Secret",
    } <= set(kinds)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    serve = deployments["vpsapi"]["spec"]["template"]["spec"]["containers"][0]
    assert serve["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert serve["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    worker = deployments["vpsapi-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["worker"]
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    annotations = kinds["Ingress"]["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    for deployment in deployments.values():
        # Service links would put other Services' `REDIS_PORT=tcp://…` into our settings.
        assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _settings_from_env(
    env: dict[str, str], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings a process started with exactly this environment reads, once the
    operator has put values in place of the placeholders (a production start refuses them)."""
    with monkeypatch.context() as patch:
        for name in [*os.environ]:
            patch.delenv(name)
        for name, value in {**env, "DATA_DIR": str(data_dir)}.items():
            patch.setenv(name, value.replace(PLACEHOLDER, "set-by-the-operator"))
        return Settings(_env_file=None)  # type: ignore[call-arg]


def test_kubernetes_pods_agree_without_sharing_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each pod's /data is its own: what the app would generate there when unset (the JWT
    secret, the device parameter keys, the object URL key with the objects themselves)
    must come from the ConfigMap and Secret, or a request served by another pod than the
    one that stored the value fails (409 on a camera, 403 on an upload URL)."""
    docs = [d for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in _documents(f)]
    config = next(d["data"] for d in docs if d["kind"] == "ConfigMap")
    secret = next(d["stringData"] for d in docs if d["kind"] == "Secret")
    for name in ("JWT_SECRET", "DEVICE_PARAM_KEYS", "S3_ACCESS_KEY", "S3_SECRET_KEY"):
        assert name in secret and name not in config, name
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        sources = [next(iter(source.values()))["name"] for source in container["envFrom"]]
        assert sources == ["vpsapi-config", "vpsapi-secrets"]
    env = {**config, **secret}
    pods = [_settings_from_env(env, tmp_path / f"pod-{n}", monkeypatch) for n in (1, 2)]
    assert pods[0].jwt_signing_key() == pods[1].jwt_signing_key()
    assert ParamKeys.from_settings(pods[0]) == ParamKeys.from_settings(pods[1])
    assert [create_storage(pod).backend for pod in pods] == ["s3", "s3"]
    assert not any((tmp_path / f"pod-{n}").exists() for n in (1, 2))  # nothing generated


def test_compose_and_dockerfile() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "seaweedfs", "mosquitto", "api", "worker", "nginx"} <= set(
        services
    )
    app_env = services["api"]["environment"]
    assert app_env["S3_ENDPOINT"].startswith("http://seaweedfs") and app_env["MQTT_URL"]
    for name in ("postgres", "redis"):
        assert "healthcheck" in services[name]
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["command"] == ["worker"]
    # The image's health check asks /health/live, which a worker does not serve.
    assert services["worker"]["healthcheck"] == {"disable": True}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER vpsapi" in dockerfile
    assert "/health/live" in dockerfile
    assert 'ENTRYPOINT ["vpsapi"]' in dockerfile
    assert "-c constraints.txt" in dockerfile  # the versions the tests passed with


@pytest.mark.multiprocess
def test_the_image_health_check_asks_the_port_served(settings_factory, server_factory) -> None:
    """`docker run -e PORT=3000` (seed 001's .env) serves on 3000: the check asks there."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    check = re.search(r"HEALTHCHECK [^\n]*\\\n\s*CMD (.+)", dockerfile)
    assert check is not None
    server = server_factory(settings_factory())
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"  # `python`, as in the image
    port = server.base_url.rsplit(":", 1)[1]
    asked = subprocess.run(["sh", "-c", check.group(1)], env={"PORT": port, "PATH": path})
    assert asked.returncode == 0
    closed = subprocess.run(
        ["sh", "-c", check.group(1)], env={"PORT": str(free_port()), "PATH": path}
    )
    assert closed.returncode != 0


def test_the_image_health_check_takes_an_empty_port_as_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A compose file's `PORT: ${PORT}`, PORT unset, passes PORT="": served on 8000, as
    with a PORT of only whitespace."""
    check = re.search(r'CMD python -c "(.+)"', (ROOT / "Dockerfile").read_text())
    assert check is not None
    asked: list[str] = []

    def urlopen(url: str) -> SimpleNamespace:
        asked.append(url)
        return SimpleNamespace(status=200)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    for blank in ("", " "):
        monkeypatch.setenv("PORT", blank)
        with pytest.raises(SystemExit) as exited:
            exec(check.group(1), {})
        assert not exited.value.code
    assert asked == ["http://127.0.0.1:8000/health/live"] * 2


def test_constraints_pin_every_dependency_once() -> None:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[A-Za-z0-9_.+!\-]+", pin) for pin in pins), pins
    names = [pin.split("==")[0].lower().replace("_", "-") for pin in pins]
    assert len(names) == len(set(names))
    pinned = set(names)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in wanted:
        name = re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, requirement


def test_systemd_units() -> None:
    for unit in ("vpsapi@.service", "vpsapi-worker.service"):
        text = (DEPLOY / "systemd" / unit).read_text()
        for directive in (
            "NoNewPrivileges=true",
            "ProtectSystem=strict",
            "KillSignal=SIGTERM",
            "Restart=always",
        ):
            assert directive in text, (unit, directive)
    assert "vpsapi worker" in (DEPLOY / "systemd" / "vpsapi-worker.service").read_text()
    # Managing nginx needs what the hardened units forbid: its drop-in says so.
    drop_in = (DEPLOY / "systemd" / "manage-nginx.conf").read_text()
    assert "[Service]" in drop_in and "NoNewPrivileges=false" in drop_in
    assert "ReadWritePaths=/etc/nginx/conf.d /etc/ssl/vpsapi" in drop_in
    # For both units: certificates are issued by a job, which a worker may run.
    installed = re.findall(r"/etc/systemd/system/(\S+)\.d/manage-nginx\.conf", drop_in)
    assert sorted(installed) == sorted(p.name for p in (DEPLOY / "systemd").glob("*.service"))


def test_every_nginx_upstream_is_a_serve_instance() -> None:
    """The site's upstream ports are the serve instances the units and the README start (a
    listed port with nothing behind it fills nginx's error log), and fail2ban reads the
    journal of every instance."""
    site = (DEPLOY / "nginx" / "vpsapi.conf").read_text()
    upstream = re.search(r"^upstream vpsapi \{(.*?)^\}", site, re.M | re.S)
    assert upstream is not None
    ports = re.findall(r"^\s*server 127\.0\.0\.1:(\d+)\b", upstream.group(1), re.M)
    assert len(ports) >= 2
    template = DEPLOY / "systemd" / "vpsapi@.service"
    unit = template.read_text()
    assert re.search(r"^ExecStart=\S+ serve --host 127\.0\.0\.1 --port %i$", unit, re.M)
    started = "systemctl enable --now " + " ".join(f"vpsapi@{port}" for port in ports)
    assert started in unit and started in (ROOT / "README.md").read_text()
    # systemd runs a template's instances in the slice named after it; an install still
    # running the single unit of older releases (in system.slice) is read too. fail2ban
    # ORs the groups of matches ` + ` separates.
    name = template.name.split("@")[0]
    jail = (DEPLOY / "fail2ban" / "jail.d" / "vpsapi.conf").read_text()
    match = re.search(r"^journalmatch = (.*)$", jail, re.M)
    assert match is not None
    groups = [group.split() for group in match.group(1).split(" + ")]
    assert sorted(groups) == [
        [f"_SYSTEMD_SLICE=system-{name}.slice"],
        [f"_SYSTEMD_UNIT={name}.service"],
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    """systemd reads the units, and the drop-in on each, without a complaint."""
    for unit in (DEPLOY / "systemd").glob("*.service"):
        # Our program at an installed path, so that systemd finds it executable.
        text = unit.read_text().replace("/srv/vpsapi/.venv/bin/vpsapi", sys.executable)
        (tmp_path / unit.name).write_text(text)
        (tmp_path / f"{unit.name}.d").mkdir()
        shutil.copy(DEPLOY / "systemd" / "manage-nginx.conf", tmp_path / f"{unit.name}.d")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", "vpsapi@8000.service", "vpsapi-worker.service"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_env_example_runs_on_one_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's settings need no server it does not name (PostgreSQL, Redis): objects
    are local files in DATA_DIR until S3 is set up, so /health/ready is not 503 for want
    of one."""
    lines = (DEPLOY / "systemd" / "vpsapi.env.example").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    settings = _settings_from_env(env, tmp_path / "data", monkeypatch)
    assert create_storage(settings).backend == "local"
