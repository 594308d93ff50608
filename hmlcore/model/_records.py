"""Validate and encode records (JSON objects) into the model's matrix, fast, one row or many.

:meth:`FeatureEncoder.transform <hmlcore.model.encoding.FeatureEncoder.transform>` hands records here. The
columns and categories learnt in training become dictionary look-ups, with no per-request pandas work,
so one row costs microseconds rather than the hundreds a vectorised frame pass spends on set-up. It
gives the same matrix as the frame path for every input that path accepts (a test holds the two
together), and it checks each value's type first, so bad input is a :class:`FeatureError` that names
the feature and the type expected, never an error from deep inside numpy.

Example:
    >>> from hmlcore.model.encoding import FeatureEncoder
    >>> enc = FeatureEncoder(["age"], ["sex"], categories={"sex": ["f", "m"]})
    >>> RecordEncoder(enc).encode([{"age": 50, "sex": "f"}]).tolist()
    [[50.0, 1.0, 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from hmlcore.errors import FeatureError
from hmlcore.model.values import OTHER, category_text, is_missing, to_number

__all__ = ["MAX_DETAILS", "FittedEncoder", "RecordEncoder"]
#: at most this many problems are listed in an error's details (a bad 10,000-row batch stays readable)
MAX_DETAILS = 20
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_ABSENT: Any = object()
_SCALARS = (str, int, float, bool, type(None))


class FittedEncoder(Protocol):
    """What a :class:`RecordEncoder` reads of the fitted encoder (a :class:`~hmlcore.model.encoding.FeatureEncoder`)."""

    @property
    def unknown(self) -> str: ...
    @property
    def missing(self) -> str: ...
    @property
    def numeric(self) -> Sequence[str]: ...
    @property
    def categorical(self) -> Sequence[str]: ...
    @property
    def categories(self) -> Mapping[str, Sequence[str]]: ...
    @property
    def columns(self) -> Sequence[str]: ...


def _shown(value: Any) -> Any:
    """``value`` as it may appear in a JSON error body: scalars as they are, anything else as a short repr."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not -(10**80) < value < 10**80:
        return f"an integer of {len(format(abs(value), 'x')) * 4} bits"
    if isinstance(value, _SCALARS):
        return value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class RecordEncoder:
    """Encode records (mappings of feature to value) the way ``encoder`` encodes them.

    Args:
        encoder: the fitted feature encoder saved with the model (build a new RecordEncoder after refitting it).
    """

    def __init__(self, encoder: FittedEncoder) -> None:
        self.unknown = encoder.unknown
        self.missing = encoder.missing
        self.numeric = list(encoder.numeric)
        self.categorical = list(encoder.categorical)
        names = encoder.columns
        self.width = len(names)
        index = {name: j for j, name in enumerate(names)}
        self.categories = {f: list(encoder.categories.get(f, [])) for f in self.categorical}
        # per categorical feature: (name, {category text: column}, the "other" column or None)
        self._columns: list[tuple[str, dict[str, int], int | None]] = [
            (f, {value: index[f"{f}={value}"] for value in self.categories[f]}, index.get(f"{f}={OTHER}")) for f in self.categorical
        ]

    def encode(self, records: Sequence[Any], *, defaults: Mapping[str, Any] | None = None) -> np.ndarray:
        """Return the float32 matrix of ``records``, one row each.

        Args:
            records: the records.
            defaults: values for features a record leaves out (a missing feature without one is an error).

        Raises:
            FeatureError: a record is not an object, lacks a feature with no default, holds a value of
                the wrong type, or breaks the encoder's unknown / missing policy. ``details`` lists the
                problems (at most :data:`MAX_DETAILS`), each with ``index``, ``feature`` and ``message``.
        """
        rows: list[list[float]] = []
        problems: list[dict[str, Any]] = []
        defaults = defaults or {}
        width = self.width
        numeric = list(enumerate(self.numeric))
        for i, record in enumerate(records):
            if type(record) is not dict and not isinstance(record, Mapping):
                problems.append({"index": i, "feature": None, "message": f"expected an object of features, got {type(record).__name__}"})
                continue
            row = [0.0] * width
            rows.append(row)
            for j, feature in numeric:
                value = record.get(feature, _ABSENT)
                if value is _ABSENT:
                    value = defaults.get(feature, _ABSENT)
                    if value is _ABSENT:
                        problems.append({"index": i, "feature": feature, "message": "missing", "expected": "number"})
                        continue
                kind = type(value)
                if (kind is float or kind is int) and -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
                    row[j] = value
                    continue
                number = to_number(value)
                if number is not None and (number != number or -_FLOAT32_MAX <= number <= _FLOAT32_MAX):
                    row[j] = number
                    continue
                if number is None:
                    message = f"expected a number, got {_shown(value)!r}"
                elif math.isinf(number):
                    message = f"expected a finite number, got {_shown(value)!r}"
                else:
                    message = f"{_shown(value)!r} is out of range for a 32-bit float"
                problems.append({"index": i, "feature": feature, "message": message, "expected": "number", "value": _shown(value)})
            for feature, columns, other in self._columns:
                value = record.get(feature, _ABSENT)
                if value is _ABSENT:
                    value = defaults.get(feature, _ABSENT)
                    if value is _ABSENT:
                        problems.append({"index": i, "feature": feature, "message": "missing", "expected": "string"})
                        continue
                if type(value) is not str or (value not in columns and is_missing(value)):
                    if is_missing(value):
                        if self.missing == "other" and other is not None:
                            row[other] = 1.0
                        elif self.missing == "error":
                            problems.append(
                                {"index": i, "feature": feature, "message": "a value is required (null is refused)", "expected": "string"}
                            )
                        continue
                    if not isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
                        problems.append(
                            {
                                "index": i,
                                "feature": feature,
                                "message": f"expected a string, got {type(value).__name__} {_shown(value)!r}",
                                "expected": "string",
                                "value": _shown(value),
                            }
                        )
                        continue
                    value = category_text(value)
                column = columns.get(value)
                if column is not None:
                    row[column] = 1.0
                elif self.unknown == "other" and other is not None:
                    row[other] = 1.0
                elif self.unknown == "error":
                    known = ", ".join(self.categories[feature])
                    problems.append(
                        {
                            "index": i,
                            "feature": feature,
                            "message": f"unknown category {_shown(value)!r} (known: {known})",
                            "expected": "string",
                            "value": _shown(value),
                            "allowed": self.categories[feature],
                        }
                    )
            if len(problems) > 10 * MAX_DETAILS:
                break  # enough to tell the client; don't spend time on the rest of a bad batch
        if problems:
            raise FeatureError(_summary(problems, len(records)), problems[:MAX_DETAILS])
        return np.array(rows, dtype=np.float32).reshape(len(rows), width)


def _summary(details: list[dict[str, Any]], rows: int) -> str:
    shown = []
    for detail in details[:3]:
        where = f"row {detail['index']}: " if rows > 1 else ""
        if detail["message"] == "missing":
            shown.append(f"{where}missing feature {detail['feature']}")
        else:
            shown.append(f"{where}{detail['feature'] or 'record'}: {detail['message']}")
    more = f" (and {len(details) - len(shown)} more)" if len(details) > len(shown) else ""
    return "; ".join(shown) + more
