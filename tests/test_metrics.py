"""``GET /metrics``: Prometheus text that parses, counts what was served, and adds up across gunicorn workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from hmlcore.serving.metrics import SCORE_BUCKETS, ServingMetrics, SettledFilesCollector

from .conftest import free_port, start_process, wait_ready
from .test_monitoring import build_app, publish_model, records, synthetic_data


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page, keyed by name and labels (parsing fails on bad text)."""
    return {(s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lake")
    publish_model(folder)
    return folder


@pytest.mark.slow
def test_metrics_count_requests_predictions_refusals_and_drift(lake: Path):
    client = build_app(lake).inference.create_app().test_client()
    rows = synthetic_data(300, seed=21)
    rows["age"] += 40
    batch = records(rows)
    for start in range(0, 300, 100):
        assert client.post("/predict", json=batch[start : start + 100]).status_code == 200
    assert client.get("/predict", query_string=batch[0]).status_code == 200
    assert client.post("/predict", json=[{**batch[0], "road": "moon"}]).status_code == 422
    assert client.post("/predict", json=[{**batch[0], "age": "old", "sex": None}]).status_code == 422
    assert client.get("/no-such-page").status_code == 404
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.mimetype == "text/plain"
    page = samples(answer.get_data(as_text=True))

    assert value(page, "hml_http_requests_total", route="/predict", method="POST", status="200") == 3
    assert value(page, "hml_http_requests_total", route="/predict", method="GET", status="200") == 1
    assert value(page, "hml_http_requests_total", route="/predict", method="POST", status="422") == 2
    assert value(page, "hml_http_requests_total", route="(unmatched)", method="GET", status="404") == 1
    assert value(page, "hml_http_request_duration_seconds_count", route="/predict", method="POST") == 5
    assert value(page, "hml_http_request_duration_seconds_bucket", route="/predict", method="POST", le="+Inf") == 5

    probabilities = [p["probability"] for p in client.post("/predict", json=batch).get_json()["predictions"]]
    page = samples(client.get("/metrics").get_data(as_text=True))
    served = 301 + len(batch)
    dead = value(page, "hml_predictions_total", model="mon", output="dead", value="true")
    alive = value(page, "hml_predictions_total", model="mon", output="dead", value="false")
    assert dead + alive == served and dead > 0 and alive > 0
    assert value(page, "hml_prediction_score_count", model="mon", output="probability") == served
    below_half = value(page, "hml_prediction_score_bucket", model="mon", output="probability", le="0.5")
    assert below_half >= sum(p <= 0.5 for p in probabilities)  # the last batch alone, a lower bound of the total

    assert value(page, "hml_validation_failures_total", model="mon", feature="road") == 1
    assert value(page, "hml_validation_failures_total", model="mon", feature="age") == 1
    assert value(page, "hml_model_info", model="mon", version="run-1") == 1
    assert value(page, "hml_drift_window_rows", model="mon") == served
    assert value(page, "hml_drift_status", model="mon", feature="age") == 2
    assert value(page, "hml_drift_status", model="mon", feature="sex") == 0
    assert value(page, "hml_drift_out_of_range_ratio", model="mon", feature="age") > 0.2
    assert ("hml_drift_unseen_ratio", frozenset({"model": "mon", "feature": "road"}.items())) in page


def test_each_training_bin_counts_the_window_and_a_new_model_version_starts_it_afresh(tmp_path: Path):
    publish_model(tmp_path)
    app = build_app(tmp_path)
    client = app.inference.create_app().test_client()
    assert client.post("/predict", json=records(synthetic_data(200, seed=22))).status_code == 200
    page = samples(client.get("/metrics").get_data(as_text=True))
    sex = {dict(k[1])["bin"]: v for k, v in page.items() if k[0] == "hml_drift_window_bin_rows" and dict(k[1])["feature"] == "sex"}
    assert set(sex) == {"f", "m"} and sum(sex.values()) == 200  # "(unseen)" and "(missing)" never counted: no series
    assert all(dict(k[1])["version"] == "run-1" for k in page if k[0] == "hml_drift_window_bin_rows")

    publish_model(tmp_path, seed=1, run_id="run-2")
    app.get_model("mon").load()  # the newest version, as the server's reload loads it
    assert client.post("/predict", json=records(synthetic_data(50, seed=23))).status_code == 200
    page = samples(client.get("/metrics").get_data(as_text=True))
    by_version = {"run-1": 0.0, "run-2": 0.0}
    for key, count in page.items():
        if key[0] == "hml_drift_window_bin_rows" and dict(key[1])["feature"] == "age":
            by_version[dict(key[1])["version"]] += count
    assert by_version == {"run-1": 0, "run-2": 50}
    assert value(page, "hml_drift_window_rows", model="mon") == 50
    assert value(page, "hml_model_info", model="mon", version="run-2") == 1
    assert client.get("/drift").get_json()["rows"] == 50


def test_many_distinct_class_values_are_capped():
    metrics = ServingMetrics(model="m")
    metrics.observe_predictions([{"label": f"id-{i}"} for i in range(100)])
    page = samples(metrics.render()[0].decode())
    labels = {dict(k[1])["value"] for k in page if k[0] == "hml_predictions_total"}
    assert len(labels) == 21 and "other" in labels
    assert sum(v for k, v in page.items() if k[0] == "hml_predictions_total") == 100


def test_the_score_histogram_matches_prometheus_own_row_by_row_and_in_batches():
    from prometheus_client import Histogram

    counted = ServingMetrics(model="m")
    registry = CollectorRegistry()
    expected = Histogram("hml_prediction_score", "Predicted scores", ["model", "output"], registry=registry, buckets=SCORE_BUCKETS)
    scores = np.random.default_rng(3).uniform(0, 1, 500)
    scores[:5] = [0.1, 0.2, 0.5, 1.0, 0.0]  # on the bucket bounds
    counted.observe_predictions([{"p": float(s)} for s in scores[:20]])  # more than 8 rows: counted with numpy
    for s in scores[20:30]:
        counted.observe_predictions([{"p": float(s)}])  # one row: counted in plain Python
    counted.observe_predictions([{"p": float(s)} for s in scores[30:]] + [{"p": float("nan")}])
    for s in scores:
        expected.labels("m", "p").observe(float(s))
    got, wanted = samples(counted.render()[0].decode()), samples(generate_latest(registry).decode())
    buckets = {k for k in wanted if k[0] in ("hml_prediction_score_bucket", "hml_prediction_score_count")}
    assert len(buckets) == 12 and {k: got[k] for k in buckets} == {k: wanted[k] for k in buckets}
    key = ("hml_prediction_score_sum", frozenset({"model": "m", "output": "p"}.items()))
    assert got[key] == pytest.approx(wanted[key])
    assert not [k for k in got if k[0].startswith(("hml_prediction_score_buckets", "hml_prediction_score_sums"))]


POST_OK = {"route": "/predict", "method": "POST", "status": "200"}

APP = """
import sys
from hmlcore import hml
from hmlcore.serving.monitoring import enable_monitoring

app = hml.HmlApp(name="mon-project")
app.register_model("mon", hml.ModelContainer("mon", "mon-project", ["age", "speed"], ["sex", "road"], "dead", lake={lake!r}))

@hml.inference(app.inference)
def load(inference_app):
    inference_app.get_model("mon").load()
    enable_monitoring(inference_app, window=400)

app.start(sys.argv[1:])
"""


@pytest.mark.slow
def test_several_gunicorn_workers_report_one_consistent_total(lake: Path, tmp_path: Path):
    script = tmp_path / "monapp.py"
    script.write_text(textwrap.dedent(APP.format(lake=str(lake))))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    server = start_process(
        [sys.executable, str(script), "inference", "run-prod", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    batch = records(synthetic_data(300, seed=31))
    try:
        wait_ready(f"{base}/readyz", server)

        def predict(i: int) -> int:
            with requests.Session() as session:
                return session.post(f"{base}/predict", json=batch[i : i + 1], timeout=30).status_code

        def settled(check, seconds: float = 30.0):  # workers count what they buffered within a second (polled)
            until = time.monotonic() + seconds
            while not (result := check()) and time.monotonic() < until:
                time.sleep(0.2)
            return result

        sent, workers = 0, 0
        with ThreadPoolExecutor(4) as pool:
            while workers < 2 and sent < 1200:  # until both workers have served (nearly always the first round)
                assert set(pool.map(predict, range(300))) == {200}
                sent += 300
                workers = settled(lambda: requests.get(f"{base}/drift", timeout=30).json()["window"]["workers"] == 2, 3) and 2
        assert workers == 2

        def totals() -> tuple[float, float]:
            page = samples(requests.get(f"{base}/metrics", timeout=30).text)
            return value(page, "hml_http_requests_total", **POST_OK), value(
                page, "hml_prediction_score_count", model="mon", output="probability"
            )

        # requests are counted as they are answered, predictions within a second
        assert settled(lambda: totals() == (sent, sent)), f"{totals()} requests and predictions counted, {sent} sent"
        pages = [samples(requests.get(f"{base}/metrics", timeout=30).text) for _ in range(8)]
        drifts = [requests.get(f"{base}/drift", timeout=30).json() for _ in range(8)]
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0, stderr
    for page in pages:
        assert value(page, "hml_http_requests_total", **POST_OK) == sent
        assert value(page, "hml_prediction_score_count", model="mon", output="probability") == sent
        assert value(page, "hml_drift_window_workers", model="mon") == 2
        assert value(page, "hml_drift_window_rows", model="mon") == min(sent, 800)
    assert len({(d["rows"], d["status"], d["features"]["age"]["psi"]) for d in drifts}) == 1
    assert drifts[0]["status"] == "ok" and drifts[0]["rows"] == min(sent, 800)
    assert len(pages) == 8


def test_a_metrics_file_another_worker_is_creating_does_not_fail_the_scrape(tmp_path: Path):
    """prometheus_client creates a worker's file empty, then sizes it: a scrape in between must skip it, not 500."""
    worker = "from prometheus_client import Counter; Counter('hml_seen', 'rows seen').inc(3)"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=60)
    (tmp_path / "counter_999999.db").touch()  # another worker's file, caught between its creation and its sizing

    with pytest.raises(Exception, match="unpack"):  # what /metrics answered 500 with
        generate_latest(_registry_of(MultiProcessCollector(None, str(tmp_path))))
    page = generate_latest(_registry_of(SettledFilesCollector(str(tmp_path)))).decode()
    assert "hml_seen_total 3.0" in page


def _registry_of(collector: object) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry
