"""How one feature value reads, wherever it is read: missing or not, as category text, as a number.

The frame path (:mod:`hmlcore.model.encoding`), the record path (:mod:`hmlcore.model._records`), the target
and monitoring all read values through these functions, so a value means the same everywhere.

Example:
    >>> category_text(3.0), to_number("2.5"), is_missing(" ")
    ('3', 2.5, True)
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

__all__ = ["OTHER", "as_category", "category_text", "is_missing", "loaded_pandas", "to_number"]

#: the category name of the bucket that collects unseen (or missing) values under the "other" policy
OTHER = "__other__"


def is_missing(value: Any) -> bool:
    """Whether ``value`` stands for a missing value: None, NaN, ``pd.NA``, ``pd.NaT`` or a blank string.

    A blank string is how a query string (``?island=``) or a CSV cell says "missing", for a number
    (see :func:`to_number`) and for a category alike.
    """
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, (float, np.floating)) and value != value) or _pandas_missing(value)


def loaded_pandas() -> Any:
    """pandas if something imported it, else None: before then, no value can be a pandas object."""
    return sys.modules.get("pandas")


def _pandas_missing(value: Any) -> bool:
    """Whether ``value`` is pandas' ``NA`` or ``NaT``."""
    pandas = loaded_pandas()
    return pandas is not None and (value is pandas.NA or value is pandas.NaT)


def category_text(value: Any) -> str:
    """The text a categorical value is compared as: ``3``, ``3.0`` and ``"3"`` read as ``"3"``, ``True`` as ``"true"``."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def as_category(value: Any) -> str | None:
    """:func:`category_text` of ``value``, or None if it is missing.

    Example:
        >>> as_category(3.0), as_category(None)
        ('3', None)
    """
    return None if is_missing(value) else category_text(value)


def to_number(value: Any) -> float | None:
    """``value`` as a float (NaN if missing or blank), or None if it is not a number.

    Booleans are not numbers; integers too large for a float become infinite (callers decide whether
    to refuse them).

    Example:
        >>> to_number("2.5"), to_number(""), to_number(True), to_number("x")
        (2.5, nan, None, None)
    """
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return _int_to_float(value)
    if value is None or _pandas_missing(value):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, str):
        if not value.strip():
            return math.nan
        try:
            return float(value)
        except ValueError:
            return None
    if isinstance(value, (int, np.integer)):
        return _int_to_float(int(value))
    try:
        return float(value)  # NaN stays NaN
    except (TypeError, ValueError, OverflowError):
        return None


def _int_to_float(value: int) -> float:
    return float(value) if -(2**1023) < value < 2**1023 else (math.inf if value > 0 else -math.inf)
