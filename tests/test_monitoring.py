"""Monitoring in the serving process: a small model served in-process, fed requests, asked for /drift and /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hmlcore import hml
from hmlcore.errors import ConfigError
from hmlcore.serving.monitoring import enable_monitoring, find_monitor

NUMERIC = ["age", "speed"]
CATEGORICAL = ["sex", "road"]


def synthetic_data(rows: int, *, seed: int) -> pd.DataFrame:
    """Crash-like rows: two numeric and two categorical features and a target that depends on them."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.normal(40, 12, rows).round(),
            "speed": rng.uniform(10, 120, rows).round(1),
            "sex": rng.choice(["f", "m"], rows),
            "road": rng.choice(["urban", "rural", "highway"], rows, p=[0.6, 0.3, 0.1]),
        }
    )
    logit = 0.03 * (df["speed"] - 60) + 0.02 * (df["age"] - 40) + np.where(df["road"] == "highway", 0.8, 0.0)
    df["dead"] = (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


def container(*, unknown: str = "error", lake: str | None = None) -> hml.ModelContainer:
    return hml.ModelContainer("mon", "mon-project", NUMERIC, CATEGORICAL, "dead", unknown_category=unknown, lake=lake)


def publish_model(lake: Path, *, unknown: str = "error", seed: int = 0, run_id: str = "run-1") -> pd.DataFrame:
    """Train a logistic regression on synthetic data and publish it to ``lake``; return the training frame."""
    from sklearn.linear_model import LogisticRegression

    train = synthetic_data(3000, seed=seed)
    c = container(unknown=unknown, lake=str(lake))
    c.analyze_distributions(train)
    X, y = c.build_training_matrix(train)
    c.bind_model(LogisticRegression(max_iter=500).fit(X, y))
    c.publish(run_id=run_id)
    return train


def predict_with_label(model: hml.ModelContainer, features: np.ndarray) -> list[dict[str, Any]]:
    return [{"probability": float(p), "dead": bool(p >= 0.5)} for p in model.predict_proba(features)[:, 1]]


def build_app(lake: Path, *, unknown: str = "error", **monitoring: Any) -> hml.HmlApp:
    """An app serving the published model with monitoring enabled, as a generated package's start.py does."""
    app = hml.HmlApp(name="mon-project")
    app.register_model("mon", container(unknown=unknown, lake=str(lake)))

    @hml.inference(app.inference)
    def load(inference_app: hml.HmlInferenceApp) -> None:
        inference_app.get_model("mon").load()
        inference_app.set_predictor(predict_with_label, model="mon")
        enable_monitoring(inference_app, **monitoring)

    return app


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in df[NUMERIC + CATEGORICAL].to_dict("records")]


def post_rows(client: Any, df: pd.DataFrame, *, batch: int = 50) -> None:
    rows = records(df)
    for start in range(0, len(rows), batch):
        answer = client.post("/predict", json=rows[start : start + batch])
        assert answer.status_code == 200, answer.get_json()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lake")
    publish_model(folder)
    return folder


@pytest.fixture(scope="module")
def lake_ignoring_unseen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lake-ignore")
    publish_model(folder, unknown="ignore")
    return folder


def client_for(lake: Path, **kwargs: Any) -> Any:
    return build_app(lake, **kwargs).inference.create_app().test_client()


def test_requests_drawn_from_training_distribution_raise_no_alert(lake: Path):
    client = client_for(lake)
    post_rows(client, synthetic_data(800, seed=11))
    drift = client.get("/drift").get_json()
    assert drift["status"] == "ok", drift
    assert drift["rows"] == 800 and drift["window"] == {"size_per_worker": 1000, "workers": 1, "rows": 800}
    assert drift["drifting"] == []
    assert {name: f["status"] for name, f in drift["features"].items()} == dict.fromkeys(NUMERIC + CATEGORICAL, "ok")
    assert drift["model"] == {"name": "mon", "version": "run-1"}


def test_a_shifted_numeric_feature_alerts_and_the_others_do_not(lake: Path):
    client = client_for(lake)
    shifted = synthetic_data(800, seed=12)
    shifted["age"] += 35
    post_rows(client, shifted)
    drift = client.get("/drift").get_json()
    assert drift["status"] == "alert"
    assert drift["drifting"] == ["age"]
    age = drift["features"]["age"]
    assert age["status"] == "alert" and age["out_of_range"] > 0.2 and age["psi"] > 0.25
    assert any(reason.startswith("psi") for reason in age["reasons"])
    assert all(f["status"] == "ok" for name, f in drift["features"].items() if name != "age")


def test_a_shifted_category_mix_alerts_on_psi(lake: Path):
    client = client_for(lake)
    shifted = synthetic_data(600, seed=13)
    shifted["road"] = np.where(np.arange(len(shifted)) % 2 == 0, "highway", shifted["road"])
    post_rows(client, shifted)
    road = client.get("/drift").get_json()["features"]["road"]
    assert road["status"] == "alert" and road["psi"] > 0.25 and road["unseen"] == 0


def test_unseen_categories_alert_when_the_model_ignores_them(lake_ignoring_unseen: Path):
    client = client_for(lake_ignoring_unseen)
    shifted = synthetic_data(500, seed=14)
    shifted.loc[shifted.index[:100], "road"] = "motorway"
    post_rows(client, shifted)
    drift = client.get("/drift").get_json()
    assert drift["features"]["road"]["unseen"] == pytest.approx(0.2)
    assert drift["features"]["road"]["status"] == "alert"
    assert drift["drifting"] == ["road"]


def test_drift_is_pending_until_the_window_holds_min_rows(lake: Path):
    client = client_for(lake, thresholds={"min_rows": 50})
    post_rows(client, synthetic_data(30, seed=15))
    drift = client.get("/drift").get_json()
    assert drift["status"] == "pending" and drift["rows"] == 30
    assert "fewer than min_rows 50" in drift["features"]["age"]["reasons"][0]


def test_the_window_forgets_rows_older_than_its_size(lake: Path):
    client = client_for(lake, window=300)
    shifted = synthetic_data(300, seed=16)
    shifted["speed"] *= 3
    post_rows(client, shifted)
    assert client.get("/drift").get_json()["features"]["speed"]["status"] == "alert"
    post_rows(client, synthetic_data(300, seed=17))
    drift = client.get("/drift").get_json()
    assert drift["rows"] == 300 and drift["features"]["speed"]["status"] == "ok"


def test_per_feature_thresholds_from_the_model_author(lake: Path):
    shifted = synthetic_data(500, seed=18)
    shifted["age"] += 8
    strict = client_for(lake)
    post_rows(strict, shifted)
    lenient = client_for(lake, thresholds={"features": {"age": {"psi": (5.0, 9.0), "out_of_range": (0.5, 0.9)}}})
    post_rows(lenient, shifted)
    assert strict.get("/drift").get_json()["features"]["age"]["status"] in ("warn", "alert")
    assert lenient.get("/drift").get_json()["features"]["age"]["status"] == "ok"


def test_detail_gives_training_and_current_shares_per_bin(lake: Path):
    client = client_for(lake)
    post_rows(client, synthetic_data(200, seed=19))
    sex = client.get("/drift?detail=1").get_json()["features"]["sex"]
    assert [b["label"] for b in sex["bins"]] == ["f", "m", "(unseen)"]
    assert sum(b["current"] for b in sex["bins"]) == pytest.approx(1.0)
    assert sex["bins"][0]["training"] == pytest.approx(0.5, abs=0.05)


def test_drift_answers_503_when_the_model_has_no_training_distributions(lake: Path):
    app = build_app(lake)
    flask_app = app.inference.create_app()
    app.get_model("mon").distributions = {}
    answer = flask_app.test_client().get("/drift")
    assert answer.status_code == 503
    assert "no training distributions" in answer.get_json()["error"]
    assert flask_app.test_client().post("/predict", json=records(synthetic_data(1, seed=1))).status_code == 200


def test_enabling_twice_keeps_one_monitor_and_bad_settings_are_refused(lake: Path, monkeypatch: pytest.MonkeyPatch):
    app = build_app(lake)
    app.inference.create_app()
    first = find_monitor(app.inference)
    assert enable_monitoring(app.inference) is first
    assert sum(1 for o in app.inference.observers if o is first) == 1
    with pytest.raises(ConfigError, match="got 0"):
        enable_monitoring(hml.HmlApp(name="other").inference, window=0)
    monkeypatch.setenv("HML_DRIFT_WINDOW", "lots")
    with pytest.raises(ConfigError, match="HML_DRIFT_WINDOW='lots' is not a whole number of at least 1"):
        enable_monitoring(hml.HmlApp(name="other").inference)
    monkeypatch.setenv("HML_DRIFT_WINDOW", "0")
    with pytest.raises(ConfigError, match="HML_DRIFT_WINDOW='0' is not a whole number of at least 1"):
        enable_monitoring(hml.HmlApp(name="other").inference)
    with pytest.raises(ConfigError, match="psi"):
        enable_monitoring(hml.HmlApp(name="other").inference, window=10, thresholds={"psi": (0.5, 0.1)})
