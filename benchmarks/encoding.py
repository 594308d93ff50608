"""Encoding speed: the vectorised FeatureEncoder against a naive per-column, per-value one-hot loop.

Printed figures, not a timed test::

    python benchmarks/encoding.py            # 1,000,000 rows x 10 features (5 numeric, 5 categorical)
    python benchmarks/encoding.py --rows 200000

The baseline is the kind of ``one_hot_encode`` helper the original project's model containers used:
for each categorical column, for each of its values, one new 0/1 column built by applying a Python
comparison to every row, then the frame's values taken as the matrix. It gives the same matrix.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from hmlcore.model import FeatureEncoder

NUMERIC = [f"num_{i}" for i in range(5)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
#: categories per categorical feature: like the demo's (speed bands, roles, sex...) and a wider one
CARDINALITY = [5, 2, 2, 3, 12]


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """A frame of ``rows`` rows with 5 numeric and 5 categorical features (about 1 % missing)."""
    rng = np.random.default_rng(seed)
    data: dict[str, object] = {name: rng.normal(size=rows) for name in NUMERIC}
    for name, k in zip(CATEGORICAL, CARDINALITY, strict=True):
        values = np.array([f"v{j}" for j in range(k)], dtype=object)[rng.integers(0, k, size=rows)]
        values[rng.random(rows) < 0.01] = None
        data[name] = values
    return pd.DataFrame(data)


def one_hot_encode(df: pd.DataFrame, column: str, values: list[str]) -> pd.DataFrame:
    """The naive baseline: one 0/1 column per value, each built by a Python comparison per row."""
    for value in values:
        df[f"{column}={value}"] = df[column].apply(lambda x, v=value: 1.0 if x == v else 0.0)
    return df.drop(columns=[column])


def naive_matrix(df: pd.DataFrame, categories: dict[str, list[str]]) -> np.ndarray:
    """Encode ``df`` column by column with :func:`one_hot_encode` (numeric columns kept as they are)."""
    out = df[NUMERIC + CATEGORICAL].copy()
    for column in CATEGORICAL:
        out = one_hot_encode(out, column, categories[column])
    return out.to_numpy(dtype=np.float32)


def best_of(repeats: int, func, *args):
    """The fastest of ``repeats`` runs: ``(seconds, result)``."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = func(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to encode")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the vectorised encoder (the fastest counts)")
    args = parser.parse_args()

    df = make_frame(args.rows)
    encoder = FeatureEncoder(NUMERIC, CATEGORICAL).fit(df)
    fast_s, fast = best_of(args.repeats, encoder.transform, df)
    naive_s, naive = best_of(1, naive_matrix, df, encoder.categories)
    assert np.array_equal(fast, naive, equal_nan=True), "the baseline and the encoder disagree"
    print(f"rows x features     {args.rows:,} x {len(NUMERIC) + len(CATEGORICAL)} -> {fast.shape[1]} columns")
    print(f"FeatureEncoder      {fast_s:8.3f} s   {args.rows / fast_s:12,.0f} rows/s")
    print(f"naive one_hot loop  {naive_s:8.3f} s   {args.rows / naive_s:12,.0f} rows/s")
    print(f"speed-up            {naive_s / fast_s:8.1f} x   (target >= 20 x)")


if __name__ == "__main__":
    main()
