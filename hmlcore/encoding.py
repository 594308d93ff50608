"""Turn features into the numeric matrix a model takes, the same way for training and serving.

:class:`FeatureEncoder` keeps the numeric features as they are (missing values become NaN, which
XGBoost handles) and one-hot encodes each categorical feature over the categories seen in training, in
a stable column order that is saved with the model. One code path encodes a training frame, a batch of
requests and a single request: every input is first turned into columns, then encoded column by column
with vectorised numpy / pandas operations.

Unseen categories follow the policy the model author chooses:

- ``"error"`` (default): raise :class:`~hmlcore.errors.FeatureError` naming the feature and the value;
- ``"ignore"``: encode the value as all zeros for that feature (as if it were missing).

A missing categorical value (None / NaN) is always encoded as all zeros.

Example:
    >>> import pandas as pd
    >>> enc = FeatureEncoder(numeric=["age"], categorical=["sex"]).fit(pd.DataFrame({"age": [30, 40], "sex": ["m", "f"]}))
    >>> enc.columns
    ['age', 'sex=f', 'sex=m']
    >>> enc.transform([{"age": 50, "sex": "f"}]).tolist()
    [[50.0, 1.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore.errors import FeatureError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["UNKNOWN_POLICIES", "FeatureEncoder", "to_columns"]

UNKNOWN_POLICIES = ("error", "ignore")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def to_columns(data: Any, features: Sequence[str]) -> dict[str, np.ndarray]:
    """Return one numpy array per feature from a DataFrame, a list of dicts, one dict, or a dict of columns.

    Raises:
        FeatureError: a feature is missing (named in ``details``), or ``data`` is of no known shape.
    """
    if hasattr(data, "columns") and hasattr(data, "__getitem__"):  # a DataFrame
        missing = [f for f in features if f not in data.columns]
        if missing:
            raise FeatureError(
                f"missing feature{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
                [{"feature": f, "message": "missing"} for f in missing],
            )
        return {f: data[f].to_numpy() for f in features}
    if isinstance(data, Mapping):
        if data and all(isinstance(v, (list, tuple, np.ndarray)) for v in data.values()):
            columns = data
            missing = [f for f in features if f not in columns]
            if missing:
                raise FeatureError(f"missing features: {', '.join(missing)}", [{"feature": f, "message": "missing"} for f in missing])
            return {f: np.asarray(columns[f], dtype=object) for f in features}
        data = [data]
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        records = list(data)
        details: list[dict[str, Any]] = []
        for i, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise FeatureError(
                    f"record {i} is a {type(record).__name__}, not an object", [{"index": i, "feature": None, "message": "not an object"}]
                )
            details.extend({"index": i, "feature": f, "message": "missing"} for f in features if f not in record)
        if details:
            names = sorted({d["feature"] for d in details})
            raise FeatureError(f"missing feature{'s' if len(names) > 1 else ''}: {', '.join(names)}", details)
        columns_out: dict[str, np.ndarray] = {}
        for f in features:
            column = np.empty(len(records), dtype=object)
            column[:] = [r[f] for r in records]
            columns_out[f] = column
        return columns_out
    raise FeatureError(f"cannot read features from a {type(data).__name__}")


class FeatureEncoder:
    """Encode numeric and categorical features into a float matrix.

    Args:
        numeric: the numeric feature names, in order.
        categorical: the categorical feature names, in order.
        categories: the known categories of each categorical feature (learnt by :meth:`fit` if omitted).
        unknown: ``"error"`` or ``"ignore"``: what to do with a category not seen in training.
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        *,
        categories: Mapping[str, Sequence[str]] | None = None,
        unknown: str = "error",
    ) -> None:
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown={unknown!r} is not a policy: use one of {', '.join(UNKNOWN_POLICIES)}")
        overlap = set(numeric) & set(categorical)
        if overlap:
            raise ValueError(f"features declared both numeric and categorical: {', '.join(sorted(overlap))}")
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.unknown = unknown
        self.categories: dict[str, list[str]] = {k: [str(v) for v in vals] for k, vals in (categories or {}).items()}
        self._indexes: dict[str, Any] = {}

    @property
    def features(self) -> list[str]:
        """Every feature, numeric first."""
        return self.numeric + self.categorical

    @property
    def columns(self) -> list[str]:
        """The names of the encoded matrix's columns, in order."""
        names = list(self.numeric)
        for feature in self.categorical:
            names.extend(f"{feature}={value}" for value in self.categories.get(feature, []))
        return names

    def fit(self, df: pd.DataFrame) -> FeatureEncoder:
        """Learn the categories of each categorical feature from ``df`` (sorted, missing values left out)."""
        columns = to_columns(df, self.features)
        for feature in self.categorical:
            values = columns[feature]
            seen = {str(v) for v in values if not _is_missing(v)}
            self.categories[feature] = sorted(seen)
        self._indexes = {}
        return self

    def _index(self, feature: str) -> Any:
        index = self._indexes.get(feature)
        if index is None:
            import pandas as pd

            index = self._indexes[feature] = pd.Index(self.categories.get(feature, []), dtype=object)
        return index

    def transform(self, data: Any) -> np.ndarray:
        """Encode ``data`` (a DataFrame, a list of dicts, one dict or a dict of columns) into a float32 matrix.

        Raises:
            FeatureError: a feature is missing, a numeric value is not a number, or a category is unseen
                under the ``"error"`` policy; ``details`` lists every problem found.
        """
        columns = to_columns(data, self.features)
        n = len(next(iter(columns.values()))) if columns else 0
        out = np.zeros((n, len(self.columns)), dtype=np.float32)
        details: list[dict] = []
        for j, feature in enumerate(self.numeric):
            values = columns[feature]
            if values.dtype.kind in "biuf":
                out[:, j] = values
                continue
            converted = _to_float(values)
            if converted is None:
                bad = _first_non_numeric(values)
                details.append({"feature": feature, "message": f"expected a number, got {bad!r}", "value": bad})
                continue
            out[:, j] = converted
        offset = len(self.numeric)
        for feature in self.categorical:
            index = self._index(feature)
            values = columns[feature]
            if values.dtype.kind != "O" or any(not isinstance(v, str) for v in values[:1]):
                values = np.array([v if _is_missing(v) or isinstance(v, str) else _category_text(v) for v in values], dtype=object)
            codes = index.get_indexer(values)
            unseen = codes < 0
            if unseen.any():
                missing = np.fromiter((_is_missing(v) for v in values), dtype=bool, count=len(values))
                unseen &= ~missing
                if unseen.any() and self.unknown == "error":
                    value = values[np.argmax(unseen)]
                    allowed = ", ".join(self.categories.get(feature, []))
                    details.append({"feature": feature, "message": f"unknown category {value!r} (known: {allowed})", "value": value})
            rows = np.nonzero(codes >= 0)[0]
            out[rows, offset + codes[rows]] = 1.0
            offset += len(index)
        if details:
            raise FeatureError("; ".join(f"{d['feature']}: {d['message']}" for d in details), details)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The encoder as plain data (saved beside the model)."""
        return {"numeric": self.numeric, "categorical": self.categorical, "categories": self.categories, "unknown": self.unknown}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """Rebuild an encoder saved with :meth:`to_dict`."""
        return cls(data["numeric"], data["categorical"], categories=data["categories"], unknown=data.get("unknown", "error"))


def _category_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_float(values: np.ndarray) -> np.ndarray | None:
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if _is_missing(value) or (isinstance(value, str) and value.strip() == ""):
            out[i] = np.nan
        elif isinstance(value, bool):
            return None
        else:
            try:
                out[i] = float(value)
            except (TypeError, ValueError):
                return None
    return out


def _first_non_numeric(values: np.ndarray) -> Any:
    for value in values:
        if isinstance(value, bool):
            return value
        if _is_missing(value) or (isinstance(value, str) and value.strip() == ""):
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            return value
    return None
