"""Shared fixtures: bake the template, install what was baked, find free ports, start and stop processes.

Every process a test starts runs in a process group of its own (``start_new_session``) and is stopped by
that group when the test ends, also when it fails, so a server's children (gunicorn workers, the dev
server's reloader) go with it. At the end of the session, a process left behind by any test fails the run.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

#: process groups started by the tests (the leader's pid is the group id): checked at session end
_GROUPS: set[int] = set()
#: the processes started by the running test, stopped when it ends
_STARTED: list[subprocess.Popen] = []


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pip_install_editable(path: Path) -> None:
    """Install a baked package into the test environment (its dependencies are already there)."""
    run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(path)], cwd=path, check=True)


def start_process(command: Sequence[str], **options: Any) -> subprocess.Popen:
    """Start ``command`` in a process group of its own (options as for ``subprocess.Popen``).

    When the test that started it ends, passed or failed, the whole group is stopped (SIGTERM, then SIGKILL).
    """
    process = _spawn(command, **options)
    _STARTED.append(process)
    return process


def _spawn(command: Sequence[str], **options: Any) -> subprocess.Popen:
    process = subprocess.Popen(list(command), start_new_session=True, **options)
    _GROUPS.add(process.pid)
    return process


def stop_group(process: subprocess.Popen, *, timeout: float = 30) -> None:
    """SIGTERM ``process``'s group, wait up to ``timeout`` seconds for all of it, then SIGKILL what is left."""
    _signal_group(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_members(process.pid):
        if process.poll() is None:
            try:
                process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(0.2)
    _signal_group(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=timeout)  # reap it and close its pipes
    except (subprocess.TimeoutExpired, ValueError):  # ValueError: its pipes were read and closed already
        process.kill()
        process.wait()


def run(
    command: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    check: bool = False,
) -> subprocess.CompletedProcess:
    """Run ``command`` in a process group of its own and return what it did, text mode.

    On a timeout the whole group is stopped (not only the first process) and ``subprocess.TimeoutExpired``
    is raised; with ``check`` a non-zero exit raises ``AssertionError`` with the command's stderr.
    """
    process = _spawn(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        stop_group(process, timeout=10)
        raise
    finally:
        _signal_group(process.pid, signal.SIGKILL)  # anything it left running in its group
    result = subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} exited with {result.returncode}: {stderr}")
    return result


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output if it exits first or never does.

    A busy machine can accept a connection long before the app answers on it, so a slow or refused
    answer is one more poll, not a failure; only the deadline (``timeout`` seconds) is.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if server.poll() is not None:
            output = server.stderr.read() if server.stderr else ""
            raise AssertionError(f"the server exited with code {server.returncode}: {output!r}")
        try:
            if requests.get(url, timeout=max(1.0, min(10.0, left))).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200 within {timeout:.0f}s")


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _live_processes() -> dict[int, tuple[int, int]]:
    """``{pid: (parent pid, process group)}`` of every live process (zombies excluded), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited while we looked
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid pgrp ...
        if fields[0] != "Z":
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def _describe(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = "(exited)"
    return f"{pid} {command[:200]}"


def _group_members(group: int) -> list[int]:
    """The live processes of process group ``group``."""
    return [pid for pid, (_, pgrp) in _live_processes().items() if pgrp == group]


def _left_over() -> list[int]:
    """Live processes in a group a test started, and live descendants of this process: both should be gone."""
    table = _live_processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    descendants, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            descendants.add(child)
            todo.append(child)
    return sorted(descendants | {pid for pid, (_, pgrp) in table.items() if pgrp in _GROUPS})


@pytest.fixture(autouse=True, scope="session")
def _build_products_in_the_session_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Compiled specs go to a folder of the session (``HML_CACHE_DIR``, inherited by every process a test starts), not ~/.cache/hml."""
    saved = os.environ.get("HML_CACHE_DIR")
    os.environ["HML_CACHE_DIR"] = str(tmp_path_factory.mktemp("hml-cache"))
    yield
    if saved is None:
        os.environ.pop("HML_CACHE_DIR", None)
    else:
        os.environ["HML_CACHE_DIR"] = saved


@pytest.fixture(autouse=True, scope="session")
def _no_warm_interpreters() -> Iterator[None]:
    """``run-all`` in a test's subprocess runs in its own interpreter: a warm server (``hmlcore._warm``) would outlive
    the test. ``tests/test_warm.py`` turns it on for its own processes, and stops the servers they start."""
    saved = os.environ.get("HML_WARM")
    os.environ["HML_WARM"] = "false"
    yield
    if saved is None:
        os.environ.pop("HML_WARM", None)
    else:
        os.environ["HML_WARM"] = saved


@pytest.fixture(autouse=True)
def _stop_what_the_test_started() -> Iterator[None]:
    """Stop, by its process group, every process the test started with :func:`start_process`, also when it failed."""
    first = len(_STARTED)
    yield
    for process in reversed(_STARTED[first:]):
        stop_group(process)
    del _STARTED[first:]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process a test started is still running now (and stop it, so it does not linger)."""
    if not hasattr(os, "killpg") or not Path("/proc/self/stat").exists():
        return
    left = _left_over()
    if not left:
        return
    described = [_describe(pid) for pid in left]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    lines = [f"  {line}" for line in described]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = "processes started by the tests were still running at the end of the session (now killed):\n" + "\n".join(lines)
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "left-over processes", red=True)
        reporter.write_line(message)
    else:
        print(message, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def template_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def baked_default(cookies_session) -> Path:
    """The default answers baked once per session and installed into this environment."""
    result = cookies_session.bake()
    assert result.exit_code == 0, result.exception
    pip_install_editable(result.project_path)
    return Path(result.project_path)


@pytest.fixture(scope="session")
def s3_server():
    """A real SeaweedFS S3 server on 127.0.0.1 for the whole session (see tests/seaweed.py)."""
    from tests.seaweed import seaweedfs

    with seaweedfs() as server:
        yield server
