"""Single-row latency in-process: encode one request record and predict it, as /predict does per row.

Printed figures, not a timed test::

    python benchmarks/predict_one.py              # 2,000 single-row predictions

A model like the demo's (XGBoost, 300 trees of depth 4, the car-crashes features) is trained on
synthetic rows, published to a scratch lake and loaded back (so the loaded container's fast path is
what is measured), then one record at a time goes through ``container.encode`` and
``container.predict`` (the answer in the binary kind's shape).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import pandas as pd

from hmlcore.model import ModelContainer

NUMERIC = ["age", "year_vehicle", "frontal", "airbag_deployed"]
CATEGORICAL = {
    "speed_band": ["1-9km/h", "10-24", "25-39", "40-54", "55+"],
    "airbag": ["airbag", "none"],
    "seatbelt": ["belted", "none"],
    "sex": ["f", "m"],
    "occupant_role": ["driver", "pass"],
}


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Synthetic crash records with the demo's features and a learnable target."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "age": rng.integers(16, 90, rows).astype(float),
            "year_vehicle": rng.integers(1960, 2003, rows).astype(float),
            "frontal": rng.integers(0, 2, rows),
            "airbag_deployed": rng.integers(0, 2, rows),
            **{name: rng.choice(values, rows) for name, values in CATEGORICAL.items()},
        }
    )
    risk = (df["age"] > 65).astype(int) + (df["seatbelt"] == "none") + df["speed_band"].isin(["40-54", "55+"])
    df["dead"] = (risk + rng.random(rows) > 2.2).astype(int)
    return df


def container(lake: str) -> ModelContainer:
    return ModelContainer("crashed", "car-crashes", NUMERIC, list(CATEGORICAL), "dead", lake=lake)


def main() -> None:
    from xgboost import XGBClassifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="single-row predictions to time")
    args = parser.parse_args()

    df = make_frame(20_000)
    with tempfile.TemporaryDirectory(prefix="hml-bench-") as lake:
        trained = container(lake).analyze_distributions(df)
        features, target = trained.build_training_matrix(df)
        model = XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.05, tree_method="hist", random_state=0)
        trained.bind_model(model.fit(features, target)).publish(run_id="bench", git_commit="bench")
        served = container(lake).load()

    records = make_frame(args.requests, seed=1).drop(columns=["dead"]).to_dict("records")
    for record in records[:50]:  # warm up
        served.predict(served.encode(record))
    encode_us, total_us = [], []
    for record in records:
        start = time.perf_counter()
        row = served.encode(record)
        encoded = time.perf_counter()
        served.predict(row)
        done = time.perf_counter()
        encode_us.append((encoded - start) * 1e6)
        total_us.append((done - start) * 1e6)

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(values, q))

    print(f"single-row requests  {args.requests:,} (XGBoost 300 trees, depth 4, {len(served.encoder.columns)} columns)")
    print(f"encode               median {statistics.median(encode_us):7.1f} us   p99 {pct(encode_us, 99):7.1f} us")
    print(f"encode + predict     median {statistics.median(total_us):7.1f} us   p99 {pct(total_us, 99):7.1f} us")
    print(f"throughput           {1e6 / statistics.mean(total_us):,.0f} rows/s (one row at a time, one thread)")


if __name__ == "__main__":
    main()
