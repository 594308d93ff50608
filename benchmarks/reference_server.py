"""The reference server of the serving benchmark: bare Flask + gunicorn, the feature vector built by hand.

It reads the same published model as the hmlcore server (a reference JSON written by
``ModelContainer.publish``), loads its XGBoost booster from the model file (XGBoost's own format), and
answers ``GET /predict?...`` and ``POST /predict`` (one object or a list) with as little work as a
hand-written server would do: no validation beyond what Python raises, no metadata, no error bodies.
The answer has the shape of the model's kind (binary, multiclass or regression) as hmlcore's has. It is
what ``inference run-prod`` is measured against; it is not part of hmlcore.

    python benchmarks/reference_server.py REFERENCE_JSON --port 8100 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def create_app(reference: str) -> Any:
    """A Flask app that serves the booster named by ``reference`` (a local reference JSON)."""
    import flask
    import numpy as np
    import xgboost

    ref = json.loads(Path(reference).read_text())
    metadata = json.loads(Path(ref["artifacts"]["metadata"]["uri"]).read_text())
    model = ref["artifacts"]["model"]
    if not model.get("format", "").startswith("xgboost:"):
        raise SystemExit(f"the reference server serves XGBoost models only; this one is {model.get('format')!r}")
    booster = xgboost.Booster(model_file=bytearray(Path(model["uri"]).read_bytes()))  # XGBoost's own UBJSON file
    booster.set_param({"nthread": 1})
    numeric = metadata["encoder"]["numeric"]
    categorical = metadata["encoder"]["categorical"]
    kind = metadata.get("kind", "binary")
    target = metadata["target"]
    classes = (metadata.get("target_info") or {}).get("classes") or [0, 1]
    names = [str(c).lower() if isinstance(c, bool) else str(c) for c in classes]
    columns = {name: j for j, name in enumerate(metadata["columns"])}
    width = len(columns)

    def vector(record: dict[str, Any]) -> list[float]:
        row = [0.0] * width
        for j, feature in enumerate(numeric):
            row[j] = float(record[feature])
        for feature in categorical:
            j = columns.get(f"{feature}={record[feature]}")
            if j is not None:
                row[j] = 1.0
        return row

    def answers(scores: Any) -> list[dict[str, Any]]:
        if kind == "regression":
            return [{target: v} for v in scores.tolist()]
        if kind == "binary":
            return [{target: classes[int(p >= 0.5)], "probability": p} for p in scores.tolist()]
        return [{target: classes[int(row.argmax())], "probabilities": dict(zip(names, row.tolist(), strict=True))} for row in scores]

    def predict(records: list[dict[str, Any]]) -> Any:
        matrix = np.array([vector(r) for r in records], dtype=np.float32)
        return flask.jsonify({"predictions": answers(booster.inplace_predict(matrix))})

    app = flask.Flask("reference")

    @app.get("/predict")
    def predict_get() -> Any:
        return predict([flask.request.args.to_dict()])

    @app.post("/predict")
    def predict_post() -> Any:
        body = flask.request.get_json(force=True)
        return predict(body if isinstance(body, list) else [body])

    @app.get("/readyz")
    def ready() -> Any:
        return {"status": "ready"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reference", help="the model's reference JSON (a local file)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()

    from gunicorn.app.base import BaseApplication

    flask_app = create_app(args.reference)
    options = {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "worker_class": "sync",
        "preload_app": True,
        "control_socket_disable": True,
        "loglevel": "warning",
    }

    class Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return flask_app

    Application().run()


if __name__ == "__main__":
    main()
