"""What the training data looked like: per-feature summaries saved beside the model.

:func:`describe_distributions` summarises each numeric feature (count, missing, mean, std, min, max,
quantiles and a histogram with fixed bin edges) and each categorical feature (value counts and
frequencies), reading values exactly as :class:`~hmlcore.model.encoding.FeatureEncoder` does. The result is
plain JSON; the model container publishes it as ``<name>.distributions.json`` and drift monitoring
compares later data against it.

Example:
    >>> import pandas as pd
    >>> describe_distributions(pd.DataFrame({"x": [1.0, 3.0]}), ["x"], [])["numeric"]["x"]["histogram"]["edges"][:3]
    [1.0, 1.2, 1.4]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import FeatureError
from hmlcore.model.encoding import category_values, numeric_values, to_columns

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")
__all__ = ["HISTOGRAM_BINS", "QUANTILES", "describe_distributions", "describe_numeric"]

#: the number of equal-width bins of each numeric feature's histogram
HISTOGRAM_BINS = 10
#: the quantiles saved for each numeric feature (as p01, p05, ... p99)
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def describe_distributions(df: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> dict[str, Any]:
    """Summarise each feature of ``df``: numeric statistics with a fixed-edge histogram, category frequencies.

    Values are read as the encoder reads them, so the summaries describe what the model saw. The
    histogram has :data:`HISTOGRAM_BINS` equal bins between the minimum and the maximum; the edges are
    saved, so later data (#8's drift checks) can be counted into the same bins.

    Example:
        >>> import pandas as pd
        >>> d = describe_distributions(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]}), ["x"], ["c"])
        >>> d["numeric"]["x"]["mean"], d["categorical"]["c"]["counts"]
        (2.0, {'a': 2, 'b': 1})
    """
    columns = to_columns(df, [*numeric, *categorical])
    out: dict[str, Any] = {"rows": len(df), "numeric": {}, "categorical": {}}
    for feature in numeric:
        values, bad = numeric_values(columns[feature])
        if bad is not None:
            raise FeatureError(
                f"{feature}: expected a number, got {bad!r}", [{"feature": feature, "message": "not a number", "value": str(bad)}]
            )
        out["numeric"][feature] = describe_numeric(values)
    for feature in categorical:
        text, missing = category_values(columns[feature])
        values, counts = np.unique(text[~missing].astype(str), return_counts=True)
        total = int(counts.sum())
        out["categorical"][feature] = {
            "count": total,
            "missing": int(missing.sum()),
            "frequencies": {str(k): int(v) / total for k, v in zip(values, counts, strict=True)},
            "counts": {str(k): int(v) for k, v in zip(values, counts, strict=True)},
        }
    return out


def describe_numeric(values: np.ndarray) -> dict[str, Any]:
    """Summarise float ``values`` (NaN = missing): count, missing, mean, std, min, max, quantiles, histogram.

    Example:
        >>> describe_numeric(np.array([1.0, 2.0, np.nan]))["missing"]
        1
    """
    present = values[~np.isnan(values)]
    if len(present) == 0:
        return {"count": 0, "missing": len(values)}
    lo, hi = float(present.min()), float(present.max())
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1) if hi > lo else np.array([lo, lo + 1.0])
    counts, _ = np.histogram(present, bins=edges)
    q = np.quantile(present, QUANTILES)
    return {
        "count": len(present),
        "missing": len(values) - len(present),
        "mean": float(present.mean()),
        "std": float(present.std(ddof=1)) if len(present) > 1 else 0.0,
        "min": lo,
        "max": hi,
        "quantiles": {f"p{round(p * 100):02d}": float(v) for p, v in zip(QUANTILES, q, strict=True)},
        "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
    }
