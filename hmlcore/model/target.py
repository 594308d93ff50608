"""What a model predicts: the kind of model, the target's class labels or its distribution.

A :class:`Target` learns from the training rows what the model's answers mean and turns the target
column into what an estimator learns from, and back:

- ``binary`` and ``multiclass``: the class labels (strings, booleans or integers, as the data holds
  them) in a stable order (``False, True``; integers ascending; strings sorted), encoded as the integer
  codes ``0..k-1``. For a binary model the *positive* class is the second one (``True``, ``1``, or the
  later string: ``"yes"`` after ``"no"``).
- ``regression``: a number, described by its count, mean, spread, quantiles and histogram (the
  inference API's ``/metrics`` buckets predictions by these, and tests check answers against them).

Rows whose target is missing are not training rows: :func:`missing_target` finds them.

Example:
    >>> import pandas as pd
    >>> target = Target("species", kind="multiclass").fit(pd.Series(["Gentoo", "Adelie", "Gentoo"]))
    >>> target.classes, target.codes(pd.Series(["Adelie", "Gentoo"])).tolist()
    (['Adelie', 'Gentoo'], [0, 1])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError, FeatureError
from hmlcore.model.distributions import describe_numeric
from hmlcore.model.encoding import category_text, numeric_values

# pandas is imported only by the functions that learn from or encode a training column: a serving
# worker, which only reads a saved target, runs without it
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")

__all__ = ["CLASSIFIERS", "KINDS", "Target", "missing_target"]

#: the kinds of model a container serves
KINDS = ("binary", "multiclass", "regression")
#: the kinds whose answers are class labels
CLASSIFIERS = ("binary", "multiclass")

Label = str | int | bool


def check_kind(kind: Any) -> str:
    """``kind`` if it is one of :data:`KINDS`, else a :class:`~hmlcore.errors.ConfigError` naming it."""
    if kind not in KINDS:
        raise ConfigError(f"model kind {kind!r} is not one of {', '.join(KINDS)}")
    return str(kind)


def missing_target(values: pd.Series | np.ndarray) -> np.ndarray:
    """The mask of rows whose target is missing (None, NaN, NA or an empty string)."""
    import pandas as pd

    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    mask = series.isna().to_numpy(dtype=bool, copy=True)
    if series.dtype == object or isinstance(series.dtype, pd.StringDtype):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        blank = np.array([isinstance(u, str) and not u.strip() for u in uniques] + [False], dtype=bool)
        mask |= blank[codes]
    return mask


class Target:
    """The target column of a model of one ``kind``: its class labels, or its distribution.

    Args:
        name: the target column.
        kind: ``"binary"``, ``"multiclass"`` or ``"regression"``.
        classes: the class labels in code order (learnt by :meth:`fit` if omitted).
        distribution: the summary of the training values (learnt by :meth:`fit` if omitted).
    """

    def __init__(
        self,
        name: str,
        *,
        kind: str = "binary",
        classes: Sequence[Label] | None = None,
        distribution: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = check_kind(kind)
        self.classes: list[Label] = [] if classes is None else _checked_classes(list(classes), name)
        self.distribution: dict[str, Any] = dict(distribution or {})
        self._lookup: dict[Label, int] | None = None

    @property
    def is_classifier(self) -> bool:
        """Whether the model answers with class labels."""
        return self.kind in CLASSIFIERS

    @property
    def fitted(self) -> bool:
        """Whether the classes (or the distribution, for regression) are known."""
        return bool(self.classes) if self.is_classifier else bool(self.distribution)

    @property
    def class_names(self) -> list[str]:
        """Each class label as text (``True`` as ``"true"``): the keys of a multiclass answer's probabilities."""
        return [category_text(c) for c in self.classes]

    def fit(self, values: pd.Series) -> Target:
        """Learn the classes (or the distribution) from the training rows' target ``values`` (none missing).

        Raises:
            FeatureError: a binary target has other than two classes, a classifier's target holds
                fractional numbers, or a regression target holds something that is not a number.
        """
        import pandas as pd

        values = pd.Series(values).reset_index(drop=True)
        if self.is_classifier:
            classes = _learn_classes(values, self.name)
            if self.kind == "binary" and len(classes) != 2:
                shown = ", ".join(map(repr, classes[:10])) + (", ..." if len(classes) > 10 else "")
                raise FeatureError(
                    f"target {self.name!r} has {len(classes)} class(es) ({shown}): a binary model needs exactly two"
                    + ("; use kind 'multiclass'" if len(classes) > 2 else "")
                )
            if len(classes) < 2:
                raise FeatureError(f"target {self.name!r} has one class ({classes[0]!r}): a classifier needs at least two")
            self.classes = classes
            self._lookup = None
            codes = self.codes(values)
            counts = np.bincount(codes, minlength=len(classes))
            names = self.class_names
            self.distribution = {
                "count": len(values),
                "counts": {n: int(c) for n, c in zip(names, counts, strict=True)},
                "frequencies": {n: int(c) / len(values) for n, c in zip(names, counts, strict=True)},
            }
        else:
            self.distribution = describe_numeric(self.numbers(values))
        return self

    def codes(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """The class code (0..k-1) of each label in ``values``; labels read as in training (``"3"`` as ``3``).

        Raises:
            FeatureError: a label was not seen in training, or a value is missing.
        """
        if not self.is_classifier:
            raise ConfigError(f"target {self.name!r} of a regression model has no class codes")
        if not self.classes:
            raise ConfigError(f"the classes of target {self.name!r} are not known: analyze the training data first")
        import pandas as pd

        if self._lookup is None:
            self._lookup = {c: i for i, c in enumerate(self.classes)}
        factor, uniques = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        if (factor < 0).any():
            raise FeatureError(f"target {self.name!r} is missing in {int((factor < 0).sum())} row(s)")
        convert = _LABEL_READERS[type(self.classes[0])]
        mapped = np.array([self._lookup.get(convert(u), -1) for u in uniques], dtype=np.int64)
        unseen = [u for u, m in zip(uniques, mapped, strict=True) if m < 0]
        if unseen:
            known = ", ".join(map(repr, self.classes))
            raise FeatureError(
                f"target {self.name!r} has label {unseen[0]!r}, which training never saw (classes: {known})",
                [{"feature": self.name, "message": "unknown class", "value": str(unseen[0])}],
            )
        return mapped[factor]

    def numbers(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """The regression target ``values`` as float64.

        Raises:
            FeatureError: a value is not a number.
        """
        floats, bad = numeric_values(_as_array(values))
        if bad is not None:
            raise FeatureError(
                f"target {self.name!r} holds {bad!r}, not a number: a regression target is numeric",
                [{"feature": self.name, "message": "not a number", "value": str(bad)}],
            )
        return floats

    def encode(self, values: pd.Series) -> np.ndarray:
        """What an estimator learns from: class codes (int64) for a classifier, floats for regression."""
        return self.codes(values) if self.is_classifier else self.numbers(values)

    def to_dict(self) -> dict[str, Any]:
        """The target as plain JSON data (saved in the model's metadata)."""
        return {"name": self.name, "kind": self.kind, "classes": list(self.classes), "distribution": self.distribution}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        """Rebuild a target saved with :meth:`to_dict`.

        Raises:
            ValueError: ``data`` is malformed.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise ValueError(f"a target must be an object with a name, got {data!r}")
        try:
            classes = data.get("classes") or None
            return cls(data["name"], kind=data.get("kind", "binary"), classes=classes, distribution=data.get("distribution"))
        except (ConfigError, FeatureError) as exc:
            raise ValueError(str(exc)) from None


def _as_array(values: pd.Series | np.ndarray) -> np.ndarray:
    """``values`` as an array; a nullable numeric Series (BigQuery's Int64, Float64) as float64 with NaN for NA."""
    import pandas as pd

    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.api.extensions.ExtensionDtype):
        if pd.api.types.is_numeric_dtype(values.dtype):
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.asarray(values)


def _learn_classes(values: pd.Series, name: str) -> list[Label]:
    """The sorted distinct labels of ``values``: booleans, integers or strings, as the column holds them."""
    import pandas as pd

    uniques = pd.unique(values.to_numpy(dtype=object))
    if pd.api.types.is_bool_dtype(values.dtype) or all(isinstance(u, (bool, np.bool_)) for u in uniques):
        return sorted({bool(u) for u in uniques})
    if pd.api.types.is_numeric_dtype(values.dtype) or all(_is_number(u) for u in uniques):
        floats = np.array([float(u) for u in uniques])
        fractional = floats[floats != np.round(floats)]
        if len(fractional):
            raise FeatureError(
                f"target {name!r} holds fractional numbers such as {fractional[0]:g}: a classifier's labels are integers,"
                " strings or booleans (to predict a number, use kind 'regression')"
            )
        return sorted({int(f) for f in floats})
    return sorted({category_text(u) for u in uniques})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _checked_classes(classes: list[Any], name: str) -> list[Label]:
    kinds = {bool if isinstance(c, bool) else int if isinstance(c, int) else str if isinstance(c, str) else None for c in classes}
    if len(kinds) != 1 or None in kinds:
        raise ConfigError(f"the classes of target {name!r} must all be strings, all integers or all booleans, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise ConfigError(f"the classes of target {name!r} repeat a label: {classes!r}")
    return classes


def _read_bool(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_number(value) and float(value) in (0.0, 1.0):
        return bool(value)
    if isinstance(value, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(value.strip().lower())
    return None


def _read_int(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if _is_number(value):
        number = float(value)
        return int(number) if number.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


_LABEL_READERS: dict[type, Any] = {bool: _read_bool, int: _read_int, str: category_text}
