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
    """Memory in use, in percent of what this process may use: of the tightest control
    group limit over it (a container's, a systemd unit's or slice's `MemoryMax=`) when
    there is one, otherwise of the host's memory.

    In a container the host's figure is the node's, which says nothing of how close this
    process is to being killed for memory."""
    host = psutil.virtual_memory()
    limited = [
        (used, limit)
        for used, limit in _control_group_figures(CGROUP_ROOT)
        if 0 < limit < host.total  # v1 writes a number near 2**63 for "no limit"
    ]
    if not limited:
        return host.percent
    return round(max(100 * used / limit for used, limit in limited), 1)


def _control_group_figures(root: Path) -> list[tuple[int, int]]:
    """(bytes in use, limit) of each memory control group that bounds this process: its
    own and its parents', in the unified (v2) hierarchy and in v1's memory one. In use
    leaves out inactive file cache, which the kernel reclaims before it kills anything
    (as `kubectl top` and cAdvisor's working set count)."""
    paths = _own_groups()
    v1 = root / "memory"
    own_v1 = v1 / paths.get("memory", "/").lstrip("/")
    if not own_v1.is_dir():  # a container's own mount: its group is the mount's top
        own_v1 = v1
    groups = [
        (group, "memory.max", "memory.current", "inactive_file")
        for group in _up_to(root / paths.get("", "/").lstrip("/"), root)
    ] + [
        (group, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
        for group in _up_to(own_v1, v1)
    ]
    found = (_figures(*group) for group in groups)
    return [figures for figures in found if figures is not None]


def _up_to(group: Path, top: Path) -> list[Path]:
    """`group` and its parents up to `top` (a parent's limit binds its children too)."""
    chain = [group]
    while chain[-1] != top and top in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def _figures(
    group: Path, limit_file: str, usage_file: str, inactive_key: str
) -> tuple[int, int] | None:
    """A group's (in use, limit), or None when it has no limit ("max") or no such files."""
    try:
        limit_text = (group / limit_file).read_text().strip()
        if limit_text == "max":  # nothing more to read for a group without a limit
            return None
        limit = int(limit_text)
        usage = int((group / usage_file).read_text())
        stat = dict(line.split(" ", 1) for line in (group / "memory.stat").read_text().splitlines())
        inactive = int(stat.get(inactive_key, "0"))
    except (OSError, ValueError):
        return None
    return max(usage - inactive, 0), limit


def _own_groups() -> dict[str, str]:
    """This process's group path per hierarchy, from `/proc/self/cgroup`: `""` for the
    unified one (`0::/system.slice/vpsapi.service`; `0::/` in a container's own
    namespace), `"memory"` for v1's memory controller (`4:memory:/docker/<id>`)."""
    try:
        lines = OWN_CGROUP.read_text().splitlines()
    except OSError:
        return {}
    groups = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _number, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups
