"""Turn features into the numeric matrix a model takes, the same way for training and serving.

:class:`FeatureEncoder` keeps the numeric features as numbers and one-hot encodes each categorical
feature over the categories seen in training, in a stable column order that is saved with the model.
:meth:`FeatureEncoder.transform` encodes a training frame, a batch of requests and a single request
into the same columns. Frames (and dicts of columns) are encoded column by column with vectorised numpy /
pandas operations; records (one dict or a list of dicts, what an API receives) are checked value by
value and encoded with dictionary look-ups (:mod:`hmlcore.model._records`), which costs microseconds per row
instead of the fixed set-up cost of a vectorised pass. A test holds both paths to the same matrix.

Values are read the same way everywhere: a categorical value is compared as text (``3`` and ``3.0``
read as ``"3"``, ``True`` as ``"true"``); a numeric value must be a number or a numeric string.

**Policies** (chosen by the model author, saved with the model):

- ``unknown`` — a category not seen in training:
  ``"error"`` (default) raises :class:`~hmlcore.errors.FeatureError` naming the feature and the value;
  ``"ignore"`` encodes it as all zeros for that feature;
  ``"other"`` sets the feature's extra ``<feature>=__other__`` column.
- ``missing`` — a categorical value that is missing (None, NaN, NA):
  ``"ignore"`` (default) encodes it as all zeros; ``"error"`` raises naming the feature and the row;
  ``"other"`` sets the ``__other__`` column.
- A missing *numeric* value becomes NaN (tree models such as XGBoost route it on their own). A feature
  left out of a request altogether is always an error (the container's ``defaults`` may fill it first).

Example:
    >>> import pandas as pd
    >>> enc = FeatureEncoder(numeric=["age"], categorical=["sex"]).fit(pd.DataFrame({"age": [30, 40], "sex": ["m", "f"]}))
    >>> enc.columns
    ['age', 'sex=f', 'sex=m']
    >>> enc.transform([{"age": 50, "sex": "f"}]).tolist()
    [[50.0, 1.0, 0.0]]
    >>> FeatureEncoder(["age"], ["sex"], unknown="other").fit(pd.DataFrame({"age": [1], "sex": ["m"]})).columns
    ['age', 'sex=m', 'sex=__other__']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import FeatureError
from hmlcore.model.values import OTHER, category_text, is_missing, loaded_pandas, to_number

# pandas is imported only by the functions that read frames: records (what a serving worker encodes)
# never need it, so a worker runs without it
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")

__all__ = ["MISSING_POLICIES", "OTHER", "UNKNOWN_POLICIES", "FeatureEncoder", "to_columns"]

UNKNOWN_POLICIES = ("error", "ignore", "other")
MISSING_POLICIES = ("ignore", "error", "other")


def _missing_error(features: Sequence[str], extra: list[dict[str, Any]] | None = None) -> FeatureError:
    names = list(dict.fromkeys(features))
    details = extra if extra is not None else [{"feature": f, "message": "missing"} for f in names]
    return FeatureError(f"missing feature{'s' if len(names) > 1 else ''}: {', '.join(names)}", details)


def _frame_column(series: pd.Series) -> Any:
    import pandas as pd

    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        return series.array  # factorised without a copy to Python objects
    if pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype=object, na_value=None)
    if pd.api.types.is_numeric_dtype(dtype):
        # nullable Int64 / Float64 (BigQuery's dataframes) become float64 with NaN for NA
        return (
            series.to_numpy(dtype=np.float64, na_value=np.nan) if isinstance(dtype, pd.api.extensions.ExtensionDtype) else series.to_numpy()
        )
    return series.to_numpy(dtype=object)


def to_columns(data: Any, features: Sequence[str]) -> dict[str, np.ndarray]:
    """Return one numpy array per feature from a DataFrame, a list of dicts, one dict, or a dict of columns.

    Raises:
        FeatureError: a feature is missing (each one named in ``details``), or ``data`` is of no known shape.

    Example:
        >>> to_columns({"a": 1, "b": "x"}, ["a", "b"])["b"].tolist()
        ['x']
    """
    if _is_frame(data):
        missing = [f for f in features if f not in data.columns]
        if missing:
            raise _missing_error(missing)
        return {f: _frame_column(data[f]) for f in features}
    if isinstance(data, Mapping):
        if _is_columns(data):
            missing = [f for f in features if f not in data]
            if missing:
                raise _missing_error(missing)
            lengths = {len(data[f]) for f in features}
            if len(lengths) > 1:
                raise FeatureError(f"the feature columns differ in length: {sorted(lengths)}")
            return {f: np.asarray(data[f], dtype=object) for f in features}
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
            raise _missing_error(sorted({d["feature"] for d in details}), details)
        columns: dict[str, np.ndarray] = {}
        for f in features:
            column = np.empty(len(records), dtype=object)
            column[:] = [r[f] for r in records]
            columns[f] = column
        return columns
    raise FeatureError(f"cannot read features from a {type(data).__name__}")


def _is_frame(data: Any) -> bool:
    pandas = loaded_pandas()
    return pandas is not None and isinstance(data, pandas.DataFrame)


def _is_columns(data: Mapping[str, Any]) -> bool:
    """Whether ``data`` maps each feature to a column (a list, tuple, array or Series) rather than to one value."""
    pandas = loaded_pandas()
    kinds = (list, tuple, np.ndarray) if pandas is None else (list, tuple, np.ndarray, pandas.Series)
    return bool(data) and all(isinstance(v, kinds) for v in data.values())


def category_values(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(text, missing)``: each value as category text (None where missing) and the missing mask.

    The column is factorised first, so only its distinct values are turned into text.

    Example:
        >>> category_values(np.array([1.0, None, "a", 1], dtype=object))[0].tolist()
        ['1', None, 'a', '1']
    """
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    labels = np.array([None if is_missing(u) else category_text(u) for u in uniques] + [None], dtype=object)
    text = labels[codes]
    return text, np.asarray(pd.isna(text), dtype=bool)


def _category_codes(values: np.ndarray, lookup: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(positions, missing, factor_codes, labels)``: each value's position in ``lookup`` (-1 if unseen or missing)."""
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    blank = np.array([is_missing(u) for u in uniques] + [True], dtype=bool)
    labels = np.array([category_text(u) for u in uniques], dtype=object)
    positions = np.array([lookup.get(label, -1) for label in labels] + [-1], dtype=np.intp)
    return positions[codes], blank[codes], codes, labels


def numeric_values(values: np.ndarray) -> tuple[np.ndarray, Any]:
    """Return ``(floats, bad)``: the values as float64 (NaN where missing) and the first non-numeric value, or None.

    Example:
        >>> numeric_values(np.array(["1.5", None], dtype=object))[0].tolist()
        [1.5, nan]
    """
    if values.dtype.kind in "biuf":
        return values.astype(np.float64), None
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        number = to_number(value)
        if number is None:
            return out, value
        out[i] = number
    return out, None


class FeatureEncoder:
    """Encode numeric and categorical features into a float32 matrix.

    Args:
        numeric: the numeric feature names, in order.
        categorical: the categorical feature names, in order.
        categories: the known categories of each categorical feature (learnt by :meth:`fit` if omitted).
        unknown: ``"error"``, ``"ignore"`` or ``"other"``: what a category not seen in training becomes.
        missing: ``"ignore"``, ``"error"`` or ``"other"``: what a missing categorical value becomes.

    Example:
        >>> FeatureEncoder(["x"], ["c"], categories={"c": ["a", "b"]}).transform({"x": 1, "c": "b"}).tolist()
        [[1.0, 0.0, 1.0]]
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        *,
        categories: Mapping[str, Sequence[str]] | None = None,
        unknown: str = "error",
        missing: str = "ignore",
    ) -> None:
        if unknown not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown={unknown!r} is not a policy: use one of {', '.join(UNKNOWN_POLICIES)}")
        if missing not in MISSING_POLICIES:
            raise ValueError(f"missing={missing!r} is not a policy: use one of {', '.join(MISSING_POLICIES)}")
        overlap = set(numeric) & set(categorical)
        if overlap:
            raise ValueError(f"features declared both numeric and categorical: {', '.join(sorted(overlap))}")
        self.numeric = list(numeric)
        self.categorical = list(categorical)
        self.unknown = unknown
        self.missing = missing
        self.categories: dict[str, list[str]] = {k: [str(v) for v in vals] for k, vals in (categories or {}).items()}
        self._lookups: dict[str, dict[str, int]] = {}
        self._record_encoder: Any = None

    @property
    def features(self) -> list[str]:
        """Every feature, numeric first."""
        return self.numeric + self.categorical

    @property
    def has_other(self) -> bool:
        """Whether each categorical feature gets an ``__other__`` column."""
        return "other" in (self.unknown, self.missing)

    @property
    def columns(self) -> list[str]:
        """The names of the encoded matrix's columns, in order."""
        names = list(self.numeric)
        for feature in self.categorical:
            names.extend(f"{feature}={value}" for value in self.categories.get(feature, []))
            if self.has_other:
                names.append(f"{feature}={OTHER}")
        return names

    def fit(self, data: Any) -> FeatureEncoder:
        """Learn the categories of each categorical feature from ``data`` (sorted, missing values left out)."""
        columns = to_columns(data, self.features)
        for feature in self.categorical:
            text, missing = category_values(columns[feature])
            self.categories[feature] = sorted(set(text[~missing].tolist()))
        self._lookups = {}
        self._record_encoder = None
        return self

    def _lookup(self, feature: str) -> dict[str, int]:
        lookup = self._lookups.get(feature)
        if lookup is None:
            lookup = self._lookups[feature] = {value: i for i, value in enumerate(self.categories.get(feature, []))}
        return lookup

    def transform(self, data: Any, *, defaults: Mapping[str, Any] | None = None) -> np.ndarray:
        """Encode ``data`` (a DataFrame, a list of dicts, one dict or a dict of columns) into a float32 matrix.

        Args:
            data: the features.
            defaults: values for features a record leaves out (records only).

        Raises:
            FeatureError: a feature is missing, a value has the wrong type, or a value breaks the
                unknown / missing policy; ``details`` lists the problems found.
        """
        records = _as_records(data)
        if records is not None:
            if self._record_encoder is None:
                from hmlcore.model._records import RecordEncoder  # it imports numpy, which the CLI's --help must not load

                self._record_encoder = RecordEncoder(self)
            return self._record_encoder.encode(records, defaults=defaults)  # type: ignore[no-any-return]
        columns = to_columns(data, self.features)
        n = len(next(iter(columns.values()))) if columns else 0
        width = len(self.columns)
        out = np.zeros((n, width), dtype=np.float32)
        flat = out.reshape(-1)
        details: list[dict[str, Any]] = []
        for j, feature in enumerate(self.numeric):
            floats, bad = numeric_values(columns[feature])
            if bad is not None:
                details.append({"feature": feature, "message": f"expected a number, got {bad!r}", "value": _jsonable(bad)})
            out[:, j] = floats
        offset = len(self.numeric)
        for feature in self.categorical:
            lookup = self._lookup(feature)
            codes, missing, factor_codes, labels = _category_codes(columns[feature], lookup)
            unseen = (codes < 0) & ~missing
            if self.unknown == "error" and unseen.any():
                value = labels[factor_codes[int(np.argmax(unseen))]]
                allowed = ", ".join(self.categories.get(feature, []))
                details.append({"feature": feature, "message": f"unknown category {value!r} (known: {allowed})", "value": value})
            if self.missing == "error" and missing.any():
                row = int(np.argmax(missing))
                details.append({"feature": feature, "message": f"missing value in row {row}", "value": None, "index": row})
            rows = np.flatnonzero(codes >= 0)
            flat[rows * width + (offset + codes[rows])] = 1.0
            offset += len(lookup)
            if self.has_other:
                other = (unseen if self.unknown == "other" else np.zeros(n, dtype=bool)) | (missing if self.missing == "other" else False)
                flat[np.flatnonzero(other) * width + offset] = 1.0
                offset += 1
        if details:
            raise FeatureError("; ".join(f"{d['feature']}: {d['message']}" for d in details), details)
        return out

    def unseen(self, data: Any) -> dict[str, np.ndarray]:
        """For each categorical feature of the frame ``data``, the mask of rows holding a category training never saw.

        Missing values are not unseen. What such a row becomes is the ``unknown`` policy's choice; this
        only finds them (the evaluation counts them and leaves out the rows the policy refuses).
        """
        columns = to_columns(data, self.features)
        out = {}
        for feature in self.categorical:
            codes, missing, _, _ = _category_codes(columns[feature], self._lookup(feature))
            out[feature] = (codes < 0) & ~missing
        return out

    def to_dict(self) -> dict[str, Any]:
        """The encoder as plain data (saved beside the model)."""
        return {
            "numeric": self.numeric,
            "categorical": self.categorical,
            "categories": self.categories,
            "unknown": self.unknown,
            "missing": self.missing,
            "columns": self.columns,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """Rebuild an encoder saved with :meth:`to_dict`.

        Raises:
            ValueError: ``data`` is malformed or its saved column order does not match the rebuilt one.
        """
        encoder = cls(
            data["numeric"],
            data["categorical"],
            categories=data["categories"],
            unknown=data.get("unknown", "error"),
            missing=data.get("missing", "ignore"),
        )
        saved = data.get("columns")
        if saved is not None and list(saved) != encoder.columns:
            raise ValueError(f"saved column order {saved} differs from the encoder's {encoder.columns}")
        return encoder


def _as_records(data: Any) -> list[Any] | None:
    """``data`` as a list of records if it is one record or a sequence of them, else None (a frame or columns)."""
    if _is_frame(data):
        return None
    if isinstance(data, Mapping):
        if _is_columns(data):
            return None
        return [data]
    if isinstance(data, (list, tuple)):
        return list(data)
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
