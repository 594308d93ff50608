"""How labelled rows are split into training and validation: seeded, stratified, never keyed on the target.

Every row gets an identity, :func:`row_ids`: a hash of its values, combined with how many identical rows
came before it (the third copy of the same values is another row than the first). The identity does not
depend on the file's order or on its other rows, so the rows a version trained on can be found again
in later data. The promotion gate goes further: it scores two models only on rows whose feature values
(:func:`values_ids`) neither trained on, so a copy of a training row never counts as unseen.

:func:`validation_mask` then chooses the validation rows by a :class:`SplitSpec`:

- by default, a random share of the rows drawn from the ``seed`` and each row's identity, stratified by
  class for a classifier (each class gets its share of validation rows). The target decides only how many
  rows of each class go to validation, never which ones: identical features with another label are drawn
  independently, as a random split does.
- ``key``: rows sharing the key's value (a user, a session, a patient) stay on one side; whole groups are
  drawn until the share is reached.
- ``time``: the latest ``validation_share`` of the rows by that column are validation (rows at the cut-off
  time all go to validation; rows with no time train).

The same data, spec and seed always give the same split, on any machine.

Example:
    >>> import pandas as pd
    >>> rows = pd.DataFrame({"x": [1, 1, 1, 1, 2, 2, 2, 2, 3, 3], "y": [0, 0, 1, 1, 0, 1, 0, 1, 0, 1]})
    >>> mask = validation_mask(rows, SplitSpec(validation_share=0.2, seed=7), stratify=rows["y"])
    >>> int(mask.sum()), int(rows["y"][mask].sum())
    (2, 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError
from hmlcore.model.values import category_text, is_missing

# numpy and pandas are imported when rows are split: a package's CLI and server import this module to
# declare their pipeline and start without them
if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    np = lazy_module("numpy")

__all__ = ["ROW_ID", "SplitSpec", "as_ids", "row_ids", "validation_mask", "values_ids"]

#: the column holding each row's identity in the training and validation tables
ROW_ID = "_row_id"

_GOLDEN = 0x9E3779B97F4A7C15
#: the text a missing or blank category is hashed as
_MISSING = "\0missing"


def _mix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: uint64 in, well-spread uint64 out (wrapping arithmetic)."""
    z = values.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _column_hash(series: pd.Series) -> np.ndarray:
    """One uint64 per value; a number hashes as the float it is (3 and 3.0 alike), anything else as its text."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        floats = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        floats = np.where(np.isnan(floats), np.nan, floats + 0.0)  # one NaN, and -0.0 as 0.0
        return pd.util.hash_array(floats)
    if isinstance(series.dtype, pd.StringDtype):  # text and missing values only, whatever the storage
        return _text_hash(series)
    values = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(values, skipna=True) == "string":  # text and missing values only
        return _text_hash(values)
    texts = np.array([_MISSING if _missing(v) else category_text(v) for v in values], dtype=object)
    return pd.util.hash_array(texts)


def _text_hash(values: pd.Series | np.ndarray) -> np.ndarray:
    """:func:`_column_hash` of text: each text as it is, a missing or blank one as ``_MISSING``.

    Each distinct text is read and hashed once (a hash depends on its value only) and the hashes are
    spread back over the rows: a column of a few distinct texts costs a lookup per row, not a string.
    Only text is grouped this way: a text never equals another type's value, whereas ``1``, ``1.0`` and
    ``True`` are one key to a hash table but three category texts.
    """
    import pandas as pd

    codes, distinct = pd.factorize(values)  # a missing value's code is -1: the last text below
    texts = np.array([_MISSING if not text.strip() else text for text in np.asarray(distinct, dtype=object)] + [_MISSING], dtype=object)
    return pd.util.hash_array(texts)[codes]


def _missing(value: Any) -> bool:
    return bool(is_missing(value))


def values_ids(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Each row's values in ``columns`` as one uint64: identical rows get the same number, wherever they are.

    The gate compares models only on rows whose feature values neither trained on (a copy of a training row
    is not a new row to a model); :func:`row_ids` adds the copy's rank to tell the copies apart.

    Raises:
        ConfigError: a column is not in ``df``.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(f"cannot identify rows by column(s) {', '.join(missing)}: the data lacks them")
    content = np.zeros(len(df), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in columns:
            content = _mix(content * np.uint64(_GOLDEN) + _column_hash(df[column]))
    return content


def row_ids(df: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """Each row's identity (uint64): its values in ``columns`` and how many identical rows came before it.

    Raises:
        ConfigError: a column is not in ``df``.
    """
    import pandas as pd

    content = values_ids(df, columns)
    with np.errstate(over="ignore"):
        copies = pd.Series(content).groupby(content).cumcount().to_numpy(dtype=np.uint64)
        return _mix(content ^ _mix(copies + np.uint64(_GOLDEN)))


def as_ids(values: Any) -> np.ndarray:
    """Row identities as uint64, from the signed 64-bit integers a warehouse or Parquet file holds them as."""
    array = np.asarray(values)
    if array.dtype == np.uint64:
        return array
    return array.astype(np.int64).view(np.uint64)


def _draws(ids: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) per identity, fixed by the seed."""
    with np.errstate(over="ignore"):
        mixed = _mix(ids ^ _mix(np.asarray([seed], dtype=np.uint64) * np.uint64(_GOLDEN) + np.uint64(_GOLDEN)))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@dataclass(frozen=True)
class SplitSpec:
    """How ``extract`` splits the rows (``shared.SPLIT`` in a package).

    Args:
        validation_share: the share of rows held out for validation, between 0 and 1.
        seed: draws the random split (ignored with ``time``).
        key: a column whose rows stay together on one side (users, sessions, patients).
        time: a column of times: the latest share of the rows is validation.
    """

    validation_share: float = 0.2
    seed: int = 7
    key: str | None = None
    time: str | None = None

    def __post_init__(self) -> None:
        share = self.validation_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
            raise ConfigError(f"validation_share must be between 0 and 1, got {share!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"the split's seed must be a whole number >= 0, got {self.seed!r}")
        for name in ("key", "time"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"the split's {name} must be a column's name or None, got {value!r}")
        if self.key and self.time:
            raise ConfigError(f"split by key {self.key!r} or by time {self.time!r}, not both: set one of them to None")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, **overrides: Any) -> SplitSpec:
        """The spec ``shared.SPLIT`` declares, with ``overrides`` (e.g. a pipeline parameter) taking precedence.

        Raises:
            ConfigError: an unknown key or a bad value.
        """
        config = dict(config or {})
        unknown = sorted(set(config) - {"validation_share", "seed", "key", "time"})
        if unknown:
            raise ConfigError(f"the split has unknown key(s) {', '.join(map(repr, unknown))}: use validation_share, seed, key, time")
        config.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**config)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> SplitSpec:
        """The spec a registry record or ``extract``'s output holds (other keys, such as the data's digest, ignored)."""
        return cls(**{k: record[k] for k in ("validation_share", "seed", "key", "time") if k in record})

    @property
    def method(self) -> str:
        """``random``, ``key`` or ``time``."""
        return "key" if self.key else "time" if self.time else "random"

    def to_dict(self) -> dict[str, Any]:
        """The spec as the registry records it."""
        return {**asdict(self), "method": self.method}

    def describe(self) -> str:
        """The split in words, e.g. ``a random 20% (seed 7), stratified by class``."""
        share = f"{self.validation_share:.0%}"
        if self.key:
            return f"a random {share} of the {self.key!r} groups (seed {self.seed})"
        if self.time:
            return f"the latest {share} of the rows by {self.time!r}"
        return f"a random {share} of the rows (seed {self.seed})"


def validation_mask(df: pd.DataFrame, spec: SplitSpec, *, ids: np.ndarray | None = None, stratify: pd.Series | None = None) -> np.ndarray:
    """Which rows of ``df`` are validation rows under ``spec`` (a bool array); at least one row on each side.

    Args:
        df: the rows (with the ``key`` or ``time`` column if the spec names one).
        spec: the split.
        ids: each row's identity (default :func:`row_ids` of every column).
        stratify: each row's class, for a stratified random split (None: not stratified).

    Raises:
        ConfigError: the data lacks the key or time column, or has fewer than two rows.
    """
    n = len(df)
    if n < 2:
        raise ConfigError(f"cannot split {n} row(s) into training and validation: the data needs at least two")
    for column in (spec.key, spec.time):
        if column and column not in df.columns:
            raise ConfigError(f"the split names column {column!r}, which the data lacks (it has {', '.join(map(str, df.columns))})")
    if spec.time:
        mask = _by_time(df[spec.time], spec.validation_share)
    else:
        ids = row_ids(df, list(df.columns)) if ids is None else np.asarray(ids, dtype=np.uint64)
        mask = _by_key(df[spec.key], ids, spec) if spec.key else _random(ids, spec, stratify)
    if not mask.any() or mask.all():
        raise ConfigError(
            f"{spec.describe()} leaves {'no' if not mask.any() else 'every'} row for validation out of {n}: "
            "change validation_share or the split's key/time column"
        )
    return mask


def _random(ids: np.ndarray, spec: SplitSpec, stratify: pd.Series | None) -> np.ndarray:
    import pandas as pd

    draws = _draws(ids, spec.seed)
    mask = np.zeros(len(ids), dtype=bool)
    strata = (
        np.zeros(len(ids), dtype=np.int64)
        if stratify is None
        else pd.factorize(pd.Series(stratify).astype(object), use_na_sentinel=False)[0]
    )
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        take = int(math.floor(spec.validation_share * len(rows) + 0.5))
        mask[rows[np.argsort(draws[rows], kind="stable")[:take]]] = True
    return mask


def _by_key(keys: pd.Series, ids: np.ndarray, spec: SplitSpec) -> np.ndarray:
    import pandas as pd

    missing = keys.isna().to_numpy(dtype=bool)
    group_ids = _column_hash(keys)
    group_ids = np.where(missing, ids, group_ids)  # a row with no key is a group of its own
    codes, uniques = pd.factorize(group_ids)
    sizes = np.bincount(codes)
    order = np.argsort(_draws(uniques.astype(np.uint64), spec.seed), kind="stable")
    before = np.concatenate([[0], np.cumsum(sizes[order])[:-1]])
    chosen = np.zeros(len(uniques), dtype=bool)
    chosen[order[before < spec.validation_share * len(keys) - 0.5 * sizes[order]]] = True
    return chosen[codes]


def _by_time(times: pd.Series, share: float) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(times.dtype) or pd.api.types.is_datetime64_any_dtype(times.dtype):
        values = times
    else:
        values = pd.to_datetime(times, errors="coerce", utc=True)
        if values.isna().all() and times.notna().any():
            raise ConfigError(f"the split's time column {times.name!r} holds neither numbers nor dates such as {times.dropna().iloc[0]!r}")
    known = values.notna().to_numpy(dtype=bool)
    take = max(1, int(math.floor(share * int(known.sum()) + 0.5)))
    ordered = values[known].sort_values(kind="stable")
    cutoff = ordered.iloc[-take] if len(ordered) else None
    if cutoff is None:
        return np.zeros(len(times), dtype=bool)
    return (known & (values >= cutoff).fillna(False).to_numpy(dtype=bool)).astype(bool)
