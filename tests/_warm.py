"""What the warm interpreter's tests share: their environment, waiting, and stopping every warm process they made."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def warm_env(cache: Path, **more: str) -> dict[str, str]:
    """This process's environment with warm interpreters on (``CI`` unset) and kept in ``cache``."""
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env.update({"HML_WARM": "true", "HML_CACHE_DIR": str(cache), **more})
    return env


def stop_warm_processes(cache: str) -> None:
    """SIGKILL every server of ``cache`` and every child it forked (they carry the server's command line)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if cache.encode() in (entry / "cmdline").read_bytes():
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 90) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def server_up(env: Mapping[str, str]) -> Path:
    """Wait until the server of ``env``'s cache listens (its socket and pid file are there); return its pid file."""
    folder = Path(env["HML_CACHE_DIR"]) / "warm"
    wait_for(lambda: any(folder.glob("*.sock")) and any(folder.glob("*.pid")), "the warm server's socket")
    return next(folder.glob("*.pid"))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"
