"""Shared fixtures: bake the template, install what was baked, find free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pip_install_editable(path: Path) -> None:
    """Install a baked package into the test environment (its dependencies are already there)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``command`` and return what it did, text mode, never raising on a non-zero exit."""
    return subprocess.run(command, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout)


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 60) -> None:
    """Poll ``url`` until it answers 200; fail with the server's output if it exits first or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.stderr.read() if server.stderr else ""
            raise AssertionError(f"the server exited with code {server.returncode}: {output!r}")
        try:
            if requests.get(url, timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or too busy to answer in time
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered 200")


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
