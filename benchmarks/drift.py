"""Monitoring overhead, in-process: what ``enable_monitoring`` adds to each ``/predict`` request.

Trains an XGBoost model like the template's (300 trees, depth 4) on synthetic crash-like data with the
template's features (4 numeric, 5 categorical), publishes it to a temporary lake, and serves it twice
in this process with Flask's test client: once bare, once with monitoring (request counter and latency
histogram, prediction counters, drift window). Metrics run in Prometheus multiprocess mode, as under
``run-prod``. Prints, per request of 1 row and of 1,000 rows:

- the observer's own time (``Monitor.on_predict``: prediction metrics + drift window);
- the time of a whole request without and with monitoring, and the overhead in percent
  (the issue's target: serving speed drops by at most 5 %);

and the time to answer ``/drift`` and ``/metrics``. Figures are medians of interleaved rounds; they
are printed, not asserted.

    python benchmarks/drift.py --requests 2000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="hml-bench-metrics-"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hmlcore import hml  # noqa: E402
from hmlcore.serving import enable_monitoring, find_monitor  # noqa: E402

NUMERIC = ["age", "year_vehicle", "frontal", "airbag_deployed"]
CATEGORICAL = ["speed_band", "airbag", "seatbelt", "sex", "occupant_role"]


def synthetic(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.integers(16, 90, rows).astype(float),
            "year_vehicle": rng.integers(1960, 2003, rows).astype(float),
            "frontal": rng.integers(0, 2, rows).astype(float),
            "airbag_deployed": rng.integers(0, 2, rows).astype(float),
            "speed_band": rng.choice(["1-9", "10-24", "25-39", "40-54", "55+"], rows),
            "airbag": rng.choice(["airbag", "none"], rows),
            "seatbelt": rng.choice(["belted", "none"], rows),
            "sex": rng.choice(["f", "m"], rows),
            "occupant_role": rng.choice(["driver", "pass"], rows),
        }
    )
    df["dead"] = (rng.uniform(size=rows) < 0.05 + 0.2 * (df["speed_band"] == "55+") + 0.1 * (df["seatbelt"] == "none")).astype(int)
    return df


def container(lake: str) -> hml.ModelContainer:
    return hml.ModelContainer("crashed", "bench", NUMERIC, CATEGORICAL, "dead", lake=lake)


def publish(lake: str) -> None:
    from xgboost import XGBClassifier

    train = synthetic(20_000, seed=0)
    c = container(lake).analyze_distributions(train)
    X, y = c.build_training_matrix(train)
    c.bind_model(XGBClassifier(n_estimators=300, max_depth=4, n_jobs=1).fit(X, y))
    c.publish(run_id="bench")


def serving_app(lake: str, *, monitored: bool) -> hml.HmlApp:
    app = hml.HmlApp(name="bench")
    app.register_model("crashed", container(lake))

    def predict(model: hml.ModelContainer, features: np.ndarray) -> list[dict[str, Any]]:
        return model.predict(features)  # the template's predictor: the answer in the model kind's shape

    @hml.inference(app.inference)
    def load(inference_app: hml.HmlInferenceApp) -> None:
        inference_app.get_model("crashed").load()
        inference_app.set_predictor(predict, model="crashed")
        if monitored:
            enable_monitoring(inference_app)

    return app


def per_call(func: Callable[[], Any], calls: int) -> float:
    """Microseconds per call of ``func``, over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        func()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="single-row requests per round and app")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the median is printed)")
    args = parser.parse_args()

    lake = tempfile.mkdtemp(prefix="hml-bench-lake-")
    print("training a 300-tree XGBoost model on synthetic data ...", flush=True)
    publish(lake)
    bare = serving_app(lake, monitored=False).inference.create_app().test_client()
    app = serving_app(lake, monitored=True)
    monitored = app.inference.create_app().test_client()
    monitor = find_monitor(app.inference)
    assert monitor is not None
    data = synthetic(1000, seed=1)[NUMERIC + CATEGORICAL]
    batch = [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in data.to_dict("records")]
    one = batch[:1]
    for client in (bare, monitored):  # warm up: encoders, metric children, the drift window
        for _ in range(50):
            assert client.post("/predict", json=one).status_code == 200
        assert client.post("/predict", json=batch).status_code == 200

    c = monitor.container
    features_one, features_batch = c.encode(one), c.encode(batch)
    predictions_one = monitored.post("/predict", json=one).get_json()["predictions"]
    predictions_batch = monitored.post("/predict", json=batch).get_json()["predictions"]

    rows: dict[str, list[float]] = {k: [] for k in ("obs1", "obs1000", "bare1", "mon1", "bare1000", "mon1000")}
    batch_calls = max(20, args.requests // 50)
    for _ in range(args.rounds):
        rows["obs1"].append(per_call(lambda: monitor.on_predict(c, one, features_one, predictions_one), args.requests))
        rows["obs1000"].append(per_call(lambda: monitor.on_predict(c, batch, features_batch, predictions_batch), batch_calls))
        rows["bare1"].append(per_call(lambda: bare.post("/predict", json=one), args.requests))
        rows["mon1"].append(per_call(lambda: monitored.post("/predict", json=one), args.requests))
        rows["bare1000"].append(per_call(lambda: bare.post("/predict", json=batch), batch_calls))
        rows["mon1000"].append(per_call(lambda: monitored.post("/predict", json=batch), batch_calls))
    m = {k: statistics.median(v) for k, v in rows.items()}

    print(f"\nper request, median of {args.rounds} interleaved rounds (microseconds):")
    print(f"{'':24}{'1 row':>12}{'1,000 rows':>14}")
    print(f"{'observer (on_predict)':24}{m['obs1']:>12.1f}{m['obs1000']:>14.1f}")
    print(f"{'request, bare':24}{m['bare1']:>12.1f}{m['bare1000']:>14.1f}")
    print(f"{'request, monitored':24}{m['mon1']:>12.1f}{m['mon1000']:>14.1f}")
    for label, size in (("1 row", "1"), ("1,000 rows", "1000")):
        overhead = 100 * (m[f"mon{size}"] - m[f"bare{size}"]) / m[f"bare{size}"]
        share = 100 * m[f"obs{size}"] / m[f"bare{size}"]
        print(f"overhead, {label}: {overhead:+.1f} % of the request (the observer alone: {share:.1f} %); target <= 5 %")
    print(f"\nGET /drift:   {per_call(lambda: monitored.get('/drift'), 200) / 1000:.2f} ms")
    print(f"GET /metrics: {per_call(lambda: monitored.get('/metrics'), 200) / 1000:.2f} ms")
    print(f"window rows: {monitored.get('/drift').get_json()['rows']} (drift status {monitored.get('/drift').get_json()['status']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
