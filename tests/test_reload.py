"""A server that is ready only with a model it can predict with, and that picks up new versions without a restart."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from hmlcore.serving.reload import RELOAD_INTERVAL_ENV, ModelWatcher, reload_interval, smoke_record

from ._serving import APP_SCRIPT, RECORD, container, publish_model, serving_app, training_frame
from .conftest import free_port, start_process, stop_group, wait_ready


@pytest.fixture(autouse=True)
def _no_watcher_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests drive the watcher by hand; the served ones set the interval themselves."""
    monkeypatch.setenv(RELOAD_INTERVAL_ENV, "0")
    monkeypatch.delenv("HML_MODEL_REFERENCE", raising=False)


def publish_nan_model(lake: Path, *, run_id: str) -> str:
    """Publish a logistic regression whose coefficients are NaN: it loads, but every prediction is NaN."""
    from sklearn.linear_model import LogisticRegression

    frame = training_frame()
    model_container = container(lake).analyze_distributions(frame)
    features, target = model_container.build_training_matrix(frame)
    model = LogisticRegression(max_iter=500).fit(features, target)
    model.coef_[:] = np.nan
    return model_container.bind_model(model).publish(run_id=run_id, git_commit="abc")


def corrupt_model_file(reference: str) -> None:
    """Change the model file's bytes behind the reference's back (its digest no longer matches)."""
    model = Path(json.loads(Path(reference).read_text())["artifacts"]["model"]["uri"])
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")


def test_the_smoke_row_is_typical_of_training(tmp_path: Path):
    publish_model(tmp_path)
    loaded = container(tmp_path).load()
    frame = training_frame()
    record = smoke_record(loaded)
    assert record["age"] == pytest.approx(frame["age"].median()) and record["speed"] == pytest.approx(frame["speed"].median())
    assert record["road"] == frame["road"].mode()[0] and record["sex"] == frame["sex"].mode()[0]


def test_a_model_that_fails_its_smoke_prediction_never_makes_readyz_200(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    publish_nan_model(tmp_path, run_id="run-nan")
    client = serving_app(tmp_path).inference.create_app().test_client()
    with caplog.at_level(logging.ERROR, logger="hmlcore.inference"):
        answers = [client.get("/readyz") for _ in range(3)]
    assert {answer.status_code for answer in answers} == {503}
    assert answers[0].json["status"] == "failing" and "not valid JSON" in answers[0].json["failing"]["risk"]
    assert len([r for r in caplog.records if "cannot serve" in r.getMessage()]) == 1, "logged once, not on every probe"


def test_a_predictor_that_fails_on_a_typical_row_keeps_the_server_unready(tmp_path: Path):
    publish_model(tmp_path)
    app = serving_app(tmp_path)

    def predictor(model_container, features):
        raise RuntimeError("the author's predictor is broken")

    app.inference.set_predictor(predictor)
    client = app.inference.create_app().test_client()
    answer = client.get("/readyz")
    assert answer.status_code == 503 and "the author's predictor is broken" in answer.json["failing"]["risk"]


@pytest.mark.slow
def test_the_watcher_swaps_in_new_versions_and_refuses_bad_ones(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    publish_model(tmp_path, run_id="run-1")
    app = serving_app(tmp_path)
    client = app.inference.create_app().test_client()
    watcher = ModelWatcher(app.inference.models, interval=3600, smoke=app.inference.smoke_failure)
    assert watcher.check() == [] and client.get("/model").json["version"] == "run-1"

    publish_model(tmp_path, run_id="run-2")
    assert watcher.check() == ["risk"]
    assert client.get("/model").json["version"] == "run-2"
    assert client.get("/predict", query_string=RECORD).json["model"]["version"] == "run-2"
    assert client.get("/readyz").status_code == 200

    with caplog.at_level(logging.ERROR, logger="hmlcore.reload"):
        corrupt_model_file(publish_model(tmp_path, run_id="run-3-corrupt"))
        assert watcher.check() == [] and watcher.check() == []
        publish_nan_model(tmp_path, run_id="run-4-nan")
        assert watcher.check() == [] and watcher.check() == []
    refusals = [r.getMessage() for r in caplog.records if "is refused" in r.getMessage()]
    assert len(refusals) == 2, refusals  # once per bad version, not once per poll
    assert "fails verification" in refusals[0] and "smoke prediction fails" in refusals[1]
    assert client.get("/model").json["version"] == "run-2"
    assert client.get("/predict", query_string=RECORD).status_code == 200
    assert client.get("/readyz").status_code == 200

    publish_model(tmp_path, run_id="run-5")
    assert watcher.check() == ["risk"] and client.get("/model").json["version"] == "run-5"


@pytest.mark.parametrize(("env", "expected"), [({}, 30), ({RELOAD_INTERVAL_ENV: "0"}, 0), ({"HML_MODEL_REFERENCE": "x.json"}, 0)])
def test_reload_interval_setting(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: int):
    monkeypatch.delenv(RELOAD_INTERVAL_ENV, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert reload_interval() == expected


def test_a_bad_reload_interval_is_named(monkeypatch: pytest.MonkeyPatch):
    from hmlcore.errors import ConfigError

    monkeypatch.setenv(RELOAD_INTERVAL_ENV, "soon")
    with pytest.raises(ConfigError, match="HML_RELOAD_INTERVAL='soon' is not a whole number of at least 0 \\(seconds between"):
        reload_interval()


def versions(base: str, count: int) -> set[str]:
    """The versions ``count`` requests to ``/model`` were answered with (new connections: any worker may answer)."""
    return {requests.get(f"{base}/model", timeout=5, headers={"Connection": "close"}).json()["version"] for _ in range(count)}


def wait_for_version(base: str, version: str, timeout: float = 60) -> None:
    """Poll until 20 answers in a row come from ``version``."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = versions(base, 20)
        if seen == {version}:
            return
        time.sleep(0.5)
    raise AssertionError(f"still serving {seen} after {timeout} s, expected {version}")


@pytest.mark.slow
def test_run_prod_picks_up_a_published_model_and_refuses_a_corrupt_one(tmp_path: Path):
    lake = tmp_path / "lake"
    publish_model(lake, run_id="run-1")
    script = tmp_path / "serve_app.py"
    script.write_text(APP_SCRIPT)
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONUNBUFFERED": "1", RELOAD_INTERVAL_ENV: "1"}
    server = start_process(
        [sys.executable, str(script), str(lake), "inference", "run-prod", "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "server.log", "w"),  # noqa: SIM115 - closed with the process
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server)
        assert versions(base, 10) == {"run-1"}
        publish_model(lake, run_id="run-2")
        wait_for_version(base, "run-2")
        assert requests.get(f"{base}/predict", params=RECORD, timeout=5).json()["model"]["version"] == "run-2"

        corrupt_model_file(publish_model(lake, run_id="run-3"))
        deadline = time.monotonic() + 60
        log = ""
        while time.monotonic() < deadline and log.count("is refused") < 2:  # each worker refuses it once
            time.sleep(0.5)
            log = (tmp_path / "server.log").read_text()
        assert log.count("is refused") == 2, log[-3000:]
        time.sleep(3)  # three more polls: still refused once per worker, not once per poll
        assert (tmp_path / "server.log").read_text().count("is refused") == 2
        assert versions(base, 20) == {"run-2"}
        assert requests.get(f"{base}/predict", params=RECORD, timeout=5).status_code == 200
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    finally:
        stop_group(server)
