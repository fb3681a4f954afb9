"""Drive the real nginx: validate candidate configurations, apply them atomically, reload.

Managed files live in `NGINX_CONF_DIR`, which the main configuration includes. A change is
a mapping `file name -> new content` (None deletes the file). It goes live only after the
real `nginx -t` accepted the whole candidate configuration (the main config with the
managed directory replaced by a staged copy that has the change); then the files are
swapped in and nginx reloaded; if the reload fails the previous files come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import shlex
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil
import structlog

from vpsapi.config import Settings
from vpsapi.core.errors import ServiceUnavailable, Unprocessable

log = structlog.get_logger(__name__)

MANAGED_PREFIX = "vpsapi-"
COMMAND_TIMEOUT_S = 30
# What of a command's output is kept (nginx -t says a few lines; a daemon it started may
# go on writing to the same file).
MAX_COMMAND_OUTPUT = 1 << 20
RELOAD_WAIT_S = 5.0
RESTART_STOP_WAIT_S = 5.0  # per signal, as Debian's unit waits after QUIT
_SYSTEMD_NGINX_UNIT = re.compile(r"/([^/\s]*nginx[^/\s]*\.service)$", re.MULTILINE)
_NOT_RUNNING = re.compile(r"invalid PID number|nginx\.pid\" failed|No such process")

Changes = Mapping[str, str | None]


class NginxRejected(Unprocessable):
    """nginx refused the configuration (or the reload); `nginx_output` has its words."""

    code = "NginxConfigInvalid"

    def __init__(self, message: str, output: str) -> None:
        super().__init__(f"{message}: {output.strip()}", extra={"nginx_output": output.strip()})
        self.output = output


_CONFLICT = re.compile(r"^.*conflicting server name .*$", re.MULTILINE)


def _conflicts(output: str) -> set[str]:
    return {line.strip() for line in _CONFLICT.findall(output)}


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class ApplyResult:
    output: str
    reloaded: bool


class NginxControl:
    """One per app; safe to use from several processes (changes take a file lock)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conf_dir = settings.nginx_conf_dir
        self._lock = asyncio.Lock()
        self._main_conf: Path | None = None

    # ---- commands
    def base_args(self, main_conf: Path | None = None) -> list[str]:
        args = [self.settings.nginx_bin]
        if self.settings.nginx_prefix:
            args += ["-p", self.settings.nginx_prefix]
        conf = main_conf or (
            Path(self.settings.nginx_main_conf) if self.settings.nginx_main_conf else None
        )
        if conf is not None:
            args += ["-c", str(conf)]
        return args

    async def run(
        self, args: list[str], *, timed_out: str = "did not finish in time"
    ) -> CommandResult:
        """Run a command to its end. Its output goes to a file, not a pipe: a daemon it
        starts (nginx, or a restart command that starts it) keeps its output open, so a
        pipe's end would never come."""
        with tempfile.TemporaryFile() as output:
            try:
                process = await asyncio.create_subprocess_exec(
                    *args, stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output
                )
            except FileNotFoundError as exc:
                raise ServiceUnavailable(
                    f"{args[0]!r} was not found: install nginx or set NGINX_BIN"
                ) from exc
            try:
                await asyncio.wait_for(process.wait(), COMMAND_TIMEOUT_S)
            except TimeoutError as exc:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                raise ServiceUnavailable(f"{shlex.join(args)} {timed_out}") from exc
            output.seek(0)
            text = output.read(MAX_COMMAND_OUTPUT).decode(errors="replace")
            return CommandResult(process.returncode or 0, text)

    async def version(self) -> str | None:
        try:
            result = await self.run([self.settings.nginx_bin, "-v"])
        except ServiceUnavailable:
            return None
        match = re.search(r"nginx/(\S+)", result.output)
        return match.group(1) if match else None

    async def main_conf(self) -> Path:
        """The main configuration file: NGINX_MAIN_CONF, else the one nginx was built with."""
        if self._main_conf is None:
            if self.settings.nginx_main_conf:
                self._main_conf = Path(self.settings.nginx_main_conf)
            else:
                result = await self.run([self.settings.nginx_bin, "-V"])
                match = re.search(r"--conf-path=(\S+)", result.output)
                path = Path(match.group(1) if match else "conf/nginx.conf")
                if not path.is_absolute():
                    path = Path(self.settings.nginx_prefix or "/etc/nginx") / path
                self._main_conf = path
        return self._main_conf

    async def test(self) -> str:
        """`nginx -t` on the live configuration; raises NginxRejected with nginx's text."""
        result = await self.run([*self.base_args(), "-t"])
        if not result.ok:
            raise NginxRejected("nginx rejected the configuration", result.output)
        return result.output

    async def reload(self) -> str:
        """Reload and wait until the new workers run, so the change is live on return.

        A configuration that passed `nginx -t` can still fail to load (a port another
        process holds): nginx then logs why and keeps the old one, which is refused here
        with its words rather than reported as applied."""
        command = (
            shlex.split(self.settings.nginx_reload_cmd)
            if self.settings.nginx_reload_cmd
            else [*self.base_args(), "-s", "reload"]
        )
        master = await self.master_process()
        old_workers = {child.pid for child in master.children()} if master else set()
        error_log = await self.error_log()
        logged_before = _size(error_log)
        result = await self.run(command)
        if not result.ok:
            raise NginxRejected("nginx reload failed", result.output)
        if master is not None and not await _wait_for_new_workers(master, old_workers):
            refusal = _emergencies_since(error_log, logged_before)
            if refusal:
                raise NginxRejected("nginx kept its previous configuration", refusal)
        return result.output

    async def error_log(self) -> Path | None:
        """nginx's error log file; None when it logs elsewhere (syslog, stderr)."""
        target = await self._configured_path("error_log", "error-log-path", "logs/error.log")
        if target == "stderr" or target.startswith(("syslog:", "memory:")):
            return None
        path = Path(target)
        return (
            path if path.is_absolute() else Path(self.settings.nginx_prefix or "/etc/nginx") / path
        )

    async def pid_file(self) -> Path:
        return Path(await self._configured_path("pid", "pid-path", "/run/nginx.pid"))

    async def _configured_path(self, directive: str, build_option: str, default: str) -> str:
        """What the main configuration's `directive` names, else the path nginx was built
        with (`nginx -V`)."""
        main_conf = await self.main_conf()
        with contextlib.suppress(OSError):
            pattern = rf"^\s*{directive}\s+([^;\s]+)"
            match = re.search(pattern, main_conf.read_text(), re.MULTILINE)
            if match:
                return match.group(1)
        result = await self.run([self.settings.nginx_bin, "-V"])
        match = re.search(rf"--{build_option}=(\S+)", result.output)
        return match.group(1) if match else default

    async def master_process(self) -> psutil.Process | None:
        """The running nginx master of this configuration, None when nginx is not running."""
        try:
            pid = int((await self.pid_file()).read_text().strip())
            process = psutil.Process(pid)
            return process if "nginx" in process.name() else None
        except (OSError, ValueError, psutil.Error):
            return None

    async def restart(self) -> str:
        """NGINX_RESTART_CMD when set. Else a private nginx (NGINX_PREFIX or NGINX_MAIN_CONF
        set, and not run by a systemd nginx unit) is stopped and started here with the
        same -p/-c; the system nginx is `systemctl restart nginx`."""
        if self.settings.nginx_restart_cmd:
            command = shlex.split(self.settings.nginx_restart_cmd)
        elif self.settings.nginx_prefix or self.settings.nginx_main_conf:
            master = await self.master_process()
            unit = _systemd_unit(master) if master is not None else None
            if unit is None:
                return await self._restart_private(master)
            command = ["systemctl", "restart", unit]
        else:
            command = ["systemctl", "restart", "nginx"]
        result = await self.run(command)
        if not result.ok:
            raise NginxRejected("nginx restart failed", result.output)
        return result.output

    async def _restart_private(self, master: psutil.Process | None) -> str:
        """Test the configuration (a restart into a broken one would leave nginx down), stop
        the running master (`-s quit`, then `-s stop` if open connections keep it), start."""
        outputs = [await self.test()]
        if master is not None:
            for signal_name in ("quit", "stop"):
                outputs.append((await self.run([*self.base_args(), "-s", signal_name])).output)
                if await _exited(master, RESTART_STOP_WAIT_S):
                    break
            else:
                raise NginxRejected("nginx restart failed: nginx did not stop", "".join(outputs))
        result = await self._start()
        outputs.append(result.output)
        if not result.ok:
            raise NginxRejected("nginx restart failed", "".join(outputs))
        deadline = asyncio.get_running_loop().time() + RESTART_STOP_WAIT_S
        while await self.master_process() is None:  # the pid file comes after the fork
            if asyncio.get_running_loop().time() > deadline:
                raise NginxRejected("nginx restart failed: nginx did not start", "".join(outputs))
            await asyncio.sleep(0.05)
        return "".join(outputs)

    async def _start(self) -> CommandResult:
        return await self.run(
            self.base_args(),
            timed_out="did not return: if its configuration runs nginx in the foreground "
            "(daemon off), set NGINX_RESTART_CMD",
        )

    # ---- managed files
    def managed_files(self) -> dict[str, str]:
        if not self.conf_dir.is_dir():
            return {}
        return {
            path.name: path.read_text()
            for path in sorted(self.conf_dir.glob(f"{MANAGED_PREFIX}*.conf"))
        }

    async def test_candidate(self, changes: Changes) -> str:
        """Run `nginx -t` on the full configuration as it would be with `changes` applied."""
        main_conf = await self.main_conf()
        try:
            main_text = main_conf.read_text()
        except OSError as exc:
            raise ServiceUnavailable(f"cannot read nginx main config {main_conf}: {exc}") from exc
        staged = Path(tempfile.mkdtemp(prefix=".vpsapi-candidate-", dir=self.conf_dir.parent))
        candidate_main = main_conf.with_name(f".vpsapi-candidate-{secrets.token_hex(6)}.conf")
        try:
            if self.conf_dir.is_dir():
                shutil.copytree(self.conf_dir, staged, dirs_exist_ok=True)
            _write_files(staged, changes)
            candidate_main.write_text(self._redirect_include(main_text, main_conf, staged))
            result = await self.run([*self.base_args(candidate_main), "-t"])
        finally:
            shutil.rmtree(staged, ignore_errors=True)
            candidate_main.unlink(missing_ok=True)
        output = result.output.replace(str(candidate_main), str(main_conf))
        output = output.replace(str(staged), str(self.conf_dir))
        if not result.ok:
            raise NginxRejected("nginx rejected the configuration", output)
        await self._refuse_new_conflicts(output)
        return output

    async def _refuse_new_conflicts(self, candidate_output: str) -> None:
        """nginx accepts two servers claiming one name on one port and ignores the second
        with a warning, which names no file: a change that adds such a warning to those
        of the live configuration would not serve what it says."""
        added = _conflicts(candidate_output)
        if not added:
            return
        live = await self.run([*self.base_args(), "-t"])
        added -= _conflicts(live.output)
        if added:
            raise NginxRejected(
                "another server already answers this name on this port, so nginx would "
                "ignore this one",
                "\n".join(sorted(added)),
            )

    def _redirect_include(self, main_text: str, main_conf: Path, staged: Path) -> str:
        for spelling in (str(self.conf_dir), os.path.relpath(self.conf_dir, main_conf.parent)):
            pattern = re.compile(r"(\binclude\s+)" + re.escape(spelling.rstrip("/")) + r"(/)")
            if pattern.search(main_text):
                return pattern.sub(lambda m: m.group(1) + str(staged) + m.group(2), main_text)
        raise ServiceUnavailable(
            f"the nginx main config {main_conf} does not include {self.conf_dir}/*.conf; "
            "add `include <NGINX_CONF_DIR>/*.conf;` to its http block"
        )

    async def apply(self, changes: Changes) -> ApplyResult:
        """Validate, swap the files in and reload; on a failed reload restore the old files.

        When nginx is not running the validated files stay (it loads them when started)."""
        async with self.exclusive():
            return await self.apply_locked(changes)

    async def apply_locked(self, changes: Changes) -> ApplyResult:
        """`apply` for a caller that already holds `exclusive()` (to keep the database rows
        in step with the files: check, apply and commit under one lock)."""
        output = await self.test_candidate(changes)
        previous = self.current(changes)
        _write_files(self.conf_dir, changes)
        try:
            await self.reload()
        except NginxRejected as exc:
            if _NOT_RUNNING.search(exc.output):
                log.warning("ops.nginx.not_running", output=exc.output.strip())
                return ApplyResult(output, reloaded=False)
            _write_files(self.conf_dir, previous)
            with contextlib.suppress(NginxRejected):
                await self.reload()
            raise
        return ApplyResult(output, reloaded=True)

    def current(self, names: Iterable[str]) -> dict[str, str | None]:
        """The managed files' contents now (None: absent), to put them back later."""
        return {name: _read(self.conf_dir / name) for name in names}

    async def restore_locked(self, previous: Changes) -> None:
        """Put files saved with `current` back and reload (best effort: a rollback)."""
        _write_files(self.conf_dir, previous)
        with contextlib.suppress(NginxRejected, ServiceUnavailable):
            await self.reload()

    async def replace_all(self, files: Mapping[str, str], *, locked: bool = False) -> ApplyResult:
        """Make the managed files exactly `files` (restoring a backup, for one); `locked`:
        the caller holds `exclusive()`."""
        if not locked:
            async with self.exclusive():
                return await self.replace_all(files, locked=True)
        changes: dict[str, str | None] = {name: None for name in self.managed_files()}
        changes.update(files)
        return await self.apply_locked(changes)

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Serialise changes within this process and across processes sharing the files."""
        async with self._lock:
            self.conf_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.conf_dir.parent / ".vpsapi-nginx.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


async def _wait_for_new_workers(master: psutil.Process, old: set[int]) -> bool:
    """Until a new worker runs and every old one has left or is shutting down (stopped
    accepting); old workers may live on for their open connections (SSE, WebSocket).
    False when that did not happen within RELOAD_WAIT_S."""
    deadline = asyncio.get_running_loop().time() + RELOAD_WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        try:
            children = master.children()
            if any(child.pid not in old for child in children) and all(
                child.pid not in old or _shutting_down(child) for child in children
            ):
                return True
        except psutil.Error:
            return True
        await asyncio.sleep(0.02)
    log.warning("ops.nginx.reload_slow", waited_s=RELOAD_WAIT_S)
    return False


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


# What nginx logged after a reload is read up to this much.
_ERROR_LOG_READ_LIMIT = 64 * 1024


def _emergencies_since(path: Path | None, offset: int) -> str:
    """The `[emerg]` lines nginx wrote to its error log after `offset`."""
    if path is None:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(offset if offset <= _size(path) else 0)  # rotated meanwhile: all
            written = handle.read(_ERROR_LOG_READ_LIMIT).decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(line for line in written.splitlines() if "[emerg]" in line)


async def _exited(process: psutil.Process, timeout: float) -> bool:
    try:
        await asyncio.to_thread(process.wait, timeout)
    except psutil.TimeoutExpired:
        return False
    except psutil.Error:
        pass  # already gone
    return True


def _systemd_unit(master: psutil.Process) -> str | None:
    """The systemd nginx unit the master runs in (its cgroup), if any: then systemd must
    restart it, or it would take the stop for a crash and lose track of nginx."""
    try:
        cgroup = Path(f"/proc/{master.pid}/cgroup").read_text()
    except OSError:
        return None
    match = _SYSTEMD_NGINX_UNIT.search(cgroup)
    return match.group(1) if match else None


def _shutting_down(process: psutil.Process) -> bool:
    try:
        return "shutting down" in " ".join(process.cmdline())
    except psutil.Error:
        return True  # gone


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_files(directory: Path, changes: Changes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in changes.items():
        if "/" in name or not name.startswith(MANAGED_PREFIX):
            raise ValueError(f"not a managed nginx file name: {name!r}")
        target = directory / name
        if content is None:
            target.unlink(missing_ok=True)
            continue
        staging = directory / f".{name}.{secrets.token_hex(4)}.tmp"
        staging.write_text(content)
        os.chmod(staging, 0o644)
        os.replace(staging, target)
