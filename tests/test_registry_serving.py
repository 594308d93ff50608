"""The gate and the registry against a real gunicorn server: it keeps its champion, and follows promotions without a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hmlcore.model.registry import ModelRegistry

from ._serving import APP_SCRIPT, container, publish_gated
from .conftest import free_port, start_process, stop_group, wait_ready

pytestmark = pytest.mark.slow  # every test here starts a server or compiles with kfp


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """run-prod with two workers over a lake whose first model is a mediocre champion; stopped by process group."""
    monkeypatch.setenv("HML_USER", "grace")
    lake = tmp_path / "lake"
    publish_gated(lake, "run-1", noise=0.6)
    script = tmp_path / "serve_app.py"
    script.write_text(APP_SCRIPT)
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path), "HML_RELOAD_INTERVAL": "1", "PYTHONUNBUFFERED": "1"}
    process = start_process(
        [sys.executable, str(script), str(lake), "inference", "run-prod", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz", process)
        yield base, lake
    finally:
        stop_group(process)


def served_versions(base: str, count: int = 12) -> set[str]:
    return {requests.get(f"{base}/model", timeout=10).json()["version"] for _ in range(count)}


def wait_for_version(base: str, version: str, deadline: float = 60) -> None:
    """Poll /model until every worker (a run of consecutive answers) serves ``version``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if served_versions(base) == {version}:
            return
        time.sleep(0.3)
    raise AssertionError(f"the server still serves {served_versions(base)} after {deadline} s, not {version}")


def test_the_server_keeps_its_champion_follows_a_better_model_and_a_rollback_without_restart(server):
    base, lake = server
    assert served_versions(base) == {"run-1"}

    worse = publish_gated(lake, "run-2", noise=0.95)
    assert worse.decision.status == "rejected"
    time.sleep(3)  # three reload intervals: every worker has looked at the pointer and seen no move
    assert served_versions(base) == {"run-1"}

    better = publish_gated(lake, "run-3")
    assert better.decision.promoted
    wait_for_version(base, "run-3")
    prediction = requests.post(f"{base}/predict", json={"age": 40, "speed": 90.0, "sex": "m", "road": "highway"}, timeout=10)
    assert prediction.status_code == 200 and prediction.json()["model"]["version"] == "run-3"

    ModelRegistry(container(lake)).rollback(reason="run-3 misbehaves in shadow traffic")
    wait_for_version(base, "run-1")
    explained = requests.post(f"{base}/explain", json={"age": 40, "speed": 90.0, "sex": "m", "road": "highway"}, timeout=10)
    assert explained.status_code == 200 and explained.json()["model"]["version"] == "run-1"
