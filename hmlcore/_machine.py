"""What this machine gives a process: its cores (serving and training share them) and its installed distributions."""

from __future__ import annotations

import os
import sys

__all__ = ["available_cores", "installed_distributions"]


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's limit)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def installed_distributions(path: list[str] | None = None) -> list[str]:
    """The installed distributions, as their metadata folders name them (``xgboost-2.1.4.dist-info``), sorted.

    Reading the folders' names on ``path`` (default ``sys.path``) rather than each distribution's metadata
    keeps this to one listing per entry: a ``pip install`` or an upgrade changes the list.
    """
    found: set[str] = set()
    for entry in sys.path if path is None else path:
        try:
            with os.scandir(entry or ".") as listing:
                found.update(e.name for e in listing if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
    return sorted(found)
