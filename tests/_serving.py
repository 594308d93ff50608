"""A small XGBoost model on synthetic data, published to a lake, and apps that serve it (for the inference tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hmlcore import hml

NUMERIC = ["age", "speed"]
CATEGORICAL = ["sex", "road"]
MODEL = "risk"
PROJECT = "demo"
RECORD = {"age": 40, "speed": 90.0, "sex": "m", "road": "highway"}


def training_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """Crashes where high speed on a highway and old age raise the risk."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 90, rows),
            "speed": rng.uniform(10, 160, rows).round(1),
            "sex": rng.choice(["f", "m"], rows),
            "road": rng.choice(["city", "highway", "rural"], rows),
        }
    )
    score = frame["speed"] / 40 + (frame["road"] == "highway") * 1.5 + frame["age"] / 30 + rng.normal(0, 0.7, rows)
    frame["hurt"] = (score > score.median()).astype(int)
    return frame


def container(lake: Path | str, **options: Any) -> hml.ModelContainer:
    return hml.ModelContainer(MODEL, PROJECT, NUMERIC, CATEGORICAL, "hurt", lake=str(lake), **options)


def publish_model(lake: Path | str, *, run_id: str = "run-1", **options: Any) -> str:
    """Train a 20-tree XGBoost model and publish it to ``lake``; return the reference URI."""
    from xgboost import XGBClassifier

    model_container = container(lake, **options)
    frame = training_frame()
    model_container.analyze_distributions(frame)
    features, target = model_container.build_training_matrix(frame)
    model = XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1, random_state=0).fit(features, target)
    model_container.bind_model(model)
    return model_container.publish(run_id=run_id, git_commit="abc", metrics={"auc": 0.9})


#: the promotion rule publish_gated applies unless told otherwise
RULE = {"metric": "auc", "min_gain": 0.01}


def publish_gated(lake, run_id: str, *, noise: float = 0.0, promote=RULE, force: bool = False, holdout=None) -> hml.ModelContainer:
    """Train on the synthetic crashes with a share ``noise`` of the labels shuffled, and publish through the gate."""
    from xgboost import XGBClassifier

    model_container = container(lake)
    frame = training_frame(seed=3)
    if noise:
        rng = np.random.default_rng(len(run_id))
        flip = rng.random(len(frame)) < noise
        frame.loc[flip, "hurt"] = rng.permutation(frame.loc[flip, "hurt"].to_numpy())
    model_container.analyze_distributions(frame)
    features, target = model_container.build_training_matrix(frame)
    model_container.bind_model(XGBClassifier(n_estimators=15, max_depth=3, n_jobs=1, random_state=0).fit(features, target))
    held_out = training_frame(rows=300, seed=11) if holdout is None else holdout
    model_container.publish(
        run_id=run_id,
        git_commit="c0ffee",
        metrics={"auc": 0.5},
        promote=promote,
        holdout=held_out,
        force=force,
        lineage={"parameters": {"n_estimators": 15}, "data": {"source": "synthetic", "digest": "d1"}},
    )
    return model_container


def serving_app(lake: Path | str, *, load: bool = True, **options: Any) -> hml.HmlApp:
    """An app that registers the model and (with ``load``) loads it before serving."""
    app = hml.HmlApp(name="demo-serve", package_entrypoint="demo")
    app.register_model(MODEL, container(lake, **options))
    if load:

        @hml.inference(app.inference)
        def load_model(inference_app: hml.HmlInferenceApp) -> None:
            inference_app.get_model(MODEL).load()

    return app


#: a script that serves the model in ``sys.argv[1]``'s lake: ``python script LAKE inference run-prod ...``
APP_SCRIPT = """
import sys, time

import flask
from hmlcore import hml

app = hml.HmlApp(name="demo-serve", package_entrypoint="demo")
app.register_model("risk", hml.ModelContainer("risk", "demo", ["age", "speed"], ["sex", "road"], "hurt", lake=sys.argv[1]))


@hml.inference(app.inference)
def start(inference_app):
    inference_app.get_model("risk").load()
    hml.enable_monitoring(inference_app)

    @inference_app.flask.get("/boom")
    def boom():
        raise RuntimeError("a bug in the user's code")

    @inference_app.flask.get("/slow")
    def slow():
        time.sleep(float(flask.request.args.get("seconds", "1")))
        return {"slept": True}


app.start(sys.argv[2:])
"""
