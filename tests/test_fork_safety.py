"""Every route of every model kind answers under run-prod, through gunicorn's real fork.

gunicorn loads the model in its master and forks the workers; a worker whose inherited thread finds an
OpenMP pool started in the master waits forever for threads that do not exist. ``OMP_NUM_THREADS=2`` with
one worker is the case that hung (``/explain`` until gunicorn killed the worker): the master's smoke
prediction ran on two threads before the fork.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from ._kinds import TARGETS, generated, trained
from .test_gunicorn import _workers
from .test_server import start, stop

pytestmark = pytest.mark.slow  # each starts a server

#: serves the model of the kind in ``HML_TEST_KIND`` from the lake in ``sys.argv[1]``, with monitoring
KIND_SCRIPT = """
import os, sys

from hmlcore import hml

kind = os.environ["HML_TEST_KIND"]
target = {"binary": "adopted", "multiclass": "species", "regression": "bill"}[kind]
app = hml.HmlApp(name="zoo", package_entrypoint="zoo")
app.register_model("penguins", hml.ModelContainer("penguins", "zoo", ["flipper", "mass"], ["island"], target, kind=kind, lake=sys.argv[1]))


@hml.inference(app.inference)
def start(inference_app):
    inference_app.get_model("penguins").load()
    hml.enable_monitoring(inference_app)


app.start(sys.argv[2:])
"""


def _records(kind: str, rows: int) -> list[dict]:
    frame = generated(kind, rows, seed=5).drop(columns=[TARGETS[kind]])
    return [{k: (None if v != v or v is None else v) for k, v in row.items()} for row in frame.to_dict("records")]


@pytest.mark.parametrize(
    ("kind", "family"),
    [("binary", "xgboost"), ("multiclass", "xgboost"), ("regression", "xgboost"), ("multiclass", "sklearn"), ("regression", "sklearn")],
)
def test_every_route_answers_in_a_forked_worker_whose_openmp_has_two_threads(tmp_path: Path, kind: str, family: str):
    lake = tmp_path / "lake"
    trained(kind, family, lake).publish(run_id=f"{kind}-1", git_commit="g")
    env = {"HML_TEST_KIND": kind, "OMP_NUM_THREADS": "2"}
    # a worker that hangs is killed after --timeout seconds: its request fails instead of answering
    command = ("run-prod", "--workers", "1", "--timeout", "10", "--drain", "0")
    server, base, _ = start(tmp_path, lake, *command, env=env, script=KIND_SCRIPT, stdout=tmp_path / "log")
    one, batch = _records(kind, 1), _records(kind, 300)
    try:
        workers = _workers(server.pid)
        answers = {
            "POST /explain": requests.post(f"{base}/explain", json=one, timeout=60),
            "POST /explain batch": requests.post(f"{base}/explain", json=batch, timeout=60),
            "POST /predict": requests.post(f"{base}/predict", json=one, timeout=60),
            "POST /predict batch": requests.post(f"{base}/predict", json=batch, timeout=60),
            "GET /predict": requests.get(f"{base}/predict", params={"flipper": 210, "mass": 4000, "island": "Dream"}, timeout=60),
            "POST :predict": requests.post(f"{base}/v1/models/penguins:predict", json={"instances": batch}, timeout=60),
            "POST :explain": requests.post(f"{base}/v1/models/penguins:explain", json={"instances": batch}, timeout=60),
            "GET /v1/models/penguins": requests.get(f"{base}/v1/models/penguins", timeout=60),
            "GET /model": requests.get(f"{base}/model", timeout=60),
            "GET /openapi.json": requests.get(f"{base}/openapi.json", timeout=60),
            "GET /healthz": requests.get(f"{base}/healthz", timeout=60),
            "GET /metrics": requests.get(f"{base}/metrics", timeout=60),
            "GET /readyz": requests.get(f"{base}/readyz", timeout=60),
        }
        assert _workers(server.pid) == workers  # no worker was killed and replaced
    finally:
        _, errors = stop(server)
    statuses = {route: answer.status_code for route, answer in answers.items()}
    explained = 200 if family == "xgboost" else 501  # the scikit-learn pipelines have no contributions to give
    assert statuses == {route: explained if "explain" in route else 200 for route in answers}, statuses
    assert len(answers["POST /predict batch"].json()["predictions"]) == 300
    assert "WORKER TIMEOUT" not in errors
