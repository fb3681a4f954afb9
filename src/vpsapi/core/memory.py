"""A long-running process's memory: keeping its garbage collector cheap, and how much of
what it may use is in use."""

from __future__ import annotations

import gc
from pathlib import Path

import psutil


def freeze_long_lived_objects() -> None:
    """Put everything alive now out of the cyclic collector's reach.

    Call once a process has started: its modules, routes, models and compiled queries
    (about 200,000 objects in a serve process) live as long as it does, yet every full
    collection walked them all, about 120 ms on a 2-core machine, while every request in
    flight waited. Under load that happened several times a minute. Objects made later
    are collected as usual."""
    gc.collect()
    gc.freeze()


CGROUP_ROOT = Path("/sys/fs/cgroup")
OWN_CGROUP = Path("/proc/self/cgroup")


def memory_in_use_percent() -> float:
    """Memory in use, in percent of what this process may use: its control group's limit
    when it has one (a container's, or a systemd unit's `MemoryMax=`), otherwise the host's.

    In a container the host's figure is the node's, which says nothing of how close this
    process is to being killed for memory."""
    limited = _control_group_memory(CGROUP_ROOT)
    if limited is None:
        return psutil.virtual_memory().percent
    used, limit = limited
    return round(100 * used / limit, 1)


def _control_group_memory(root: Path) -> tuple[int, int] | None:
    """(bytes in use, limit) of this process's memory control group, v2 or v1, or None
    when it has no limit below the host's memory. In use leaves out inactive file cache,
    which the kernel reclaims before it kills anything (as `kubectl top` and cAdvisor's
    working set do)."""
    candidates = [
        (_own_v2_group(root), "memory.max", "memory.current", "inactive_file"),
        (root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ]
    for group, limit_name, usage_name, inactive_name in candidates:
        try:
            limit_text = (group / limit_name).read_text().strip()
            usage = int((group / usage_name).read_text())
            stat = (group / "memory.stat").read_text()
        except (OSError, ValueError):
            continue
        # v2 writes "max" for no limit; v1 a number near 2**63.
        if limit_text == "max" or int(limit_text) >= psutil.virtual_memory().total:
            return None
        inactive = next(
            (
                int(line.split()[1])
                for line in stat.splitlines()
                if line.startswith(inactive_name + " ")
            ),
            0,
        )
        return max(usage - inactive, 0), int(limit_text)
    return None


def _own_v2_group(root: Path) -> Path:
    """This process's group in the unified (v2) hierarchy, from `/proc/self/cgroup`
    (`0::/system.slice/vpsapi.service`; `0::/` inside a container's own namespace)."""
    try:
        lines = OWN_CGROUP.read_text().splitlines()
    except OSError:
        return root
    path = next((line[3:] for line in lines if line.startswith("0::")), "/")
    return root / path.lstrip("/")
