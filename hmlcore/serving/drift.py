"""Drift: how far recent inputs have moved from the distributions a model was trained on.

Nothing here needs the training data: :class:`DriftProfile` is built from the summaries
:func:`hmlcore.model.distributions.describe_distributions` stored with the model. Each input row becomes one *slot code*
per feature (which histogram bin, category, out-of-range side or "missing" it falls in); a
:class:`~hmlcore.serving.drift_window.DriftWindow` keeps the codes of a worker's most recent rows, whose counts
per slot every worker adds to a shared Prometheus gauge (:attr:`DriftProfile.slot_labels` names the slots).
:meth:`DriftProfile.evaluate` turns slot counts into a :class:`DriftReport`:

- numeric feature: the population stability index (PSI) over the training histogram's bins (values
  outside the training range count in the outer bins) and the share of values outside the training range;
- categorical feature: the share of categories unseen in training and the PSI over the known categories;
- every feature: the share of missing values, for information.

Each figure is judged against :class:`~hmlcore.serving.drift_report.DriftThresholds`: ``ok``, ``warn`` or
``alert``, or ``pending`` while the window holds fewer than ``min_rows`` rows (:mod:`hmlcore.serving.drift_report`).

Example:
    >>> import pandas as pd
    >>> from hmlcore.model.distributions import describe_distributions
    >>> train = pd.DataFrame({"x": [float(i % 10) for i in range(200)], "c": ["a", "b"] * 100})
    >>> profile = DriftProfile.from_distributions(describe_distributions(train, ["x"], ["c"]), ["x"], ["c"])
    >>> profile.evaluate(profile.counts(profile.codes_from_frame(train))).status
    'ok'
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError
from hmlcore.model.values import as_category
from hmlcore.serving.drift_report import STATUSES, DriftReport, DriftThresholds, FeatureDrift, judge

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from hmlcore.model.container import ModelContainer
else:
    np = lazy_module("numpy")
__all__ = ["DriftProfile"]

_SMALL_BATCH = 8  # rows up to which a request is coded without numpy
_EPSILON = 1e-4  # the share an empty bin counts as in the PSI, so that log(0) never happens


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """The population stability index between two share vectors (empty shares count as a tiny share)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), _EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftProfile:
    """The training distributions of a model's features, laid out as slots that input rows are counted in.

    A numeric feature with ``B`` histogram bins has ``B + 3`` slots: below the training range, the bins,
    above the range, missing. A categorical feature with ``K`` categories has ``K + 2``: the categories,
    unseen, missing. :attr:`slots` is the total; :meth:`codes_from_frame` / :meth:`codes_from_request`
    give one slot index per feature and row.
    """

    def __init__(self, distributions: Mapping[str, Any], numeric: Sequence[str], categorical: Sequence[str]) -> None:
        num_stats, cat_stats = distributions.get("numeric", {}), distributions.get("categorical", {})
        absent = [f for f in numeric if f not in num_stats] + [f for f in categorical if f not in cat_stats]
        if absent:
            raise ConfigError(f"the training distributions lack feature(s) {', '.join(absent)}: retrain the model to monitor its drift")
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.stats = {**{f: num_stats[f] for f in numeric}, **{f: cat_stats[f] for f in categorical}}
        self.offsets: list[int] = []
        slots = 0
        self._edges: list[np.ndarray] = []
        for feature in self.numeric:
            edges = np.asarray(self.stats[feature].get("histogram", {}).get("edges", []), dtype=np.float32)
            self._edges.append(edges)
            self.offsets.append(slots)
            slots += max(len(edges) - 1, 0) + 3
        self._categories: list[dict[str, int]] = []
        for feature in self.categorical:
            known = sorted(self.stats[feature].get("counts", self.stats[feature].get("frequencies", {})))
            self._categories.append({c: i for i, c in enumerate(known)})
            self.offsets.append(slots)
            slots += len(known) + 2
        self.slots = slots
        # the training range is [min, max] (a constant feature's histogram spans [min, min + 1])
        ranges = [
            (self.stats[f].get("min", e[0]), self.stats[f].get("max", e[-1])) if len(e) else (np.inf, -np.inf)
            for f, e in zip(self.numeric, self._edges, strict=True)
        ]
        self._lo = np.array([lo for lo, _ in ranges], dtype=np.float32)
        self._hi = np.array([hi for _, hi in ranges], dtype=np.float32)
        self._above = np.array([max(len(e) - 1, 0) + 1 for e in self._edges], dtype=np.int32)
        # the same, as Python values, for small batches
        self._numeric_py = [
            (edges[1:-1].tolist(), float(lo), float(hi), int(above), offset)
            for edges, lo, hi, above, offset in zip(self._edges, self._lo, self._hi, self._above, self.offsets, strict=False)
        ]
        self._categorical_py = [
            (feature, index, self.offsets[len(self.numeric) + j])
            for j, (feature, index) in enumerate(zip(self.categorical, self._categories, strict=True))
        ]
        #: the ``(feature, bin)`` names of the slots, as ``/metrics`` labels the windows' counts
        self.slot_labels = [
            (feature, label)
            for feature, labels in zip(self.features, self._numeric_labels() + self._categorical_labels(), strict=True)
            for label in labels
        ]

    def _numeric_labels(self) -> list[list[str]]:
        return [
            _unique([f"< {lo:g}", *(f"{a:g} to {b:g}" for a, b in zip(edges[:-1], edges[1:], strict=False)), f"> {hi:g}", "(missing)"])
            for edges, lo, hi in zip(self._edges, self._lo.tolist(), self._hi.tolist(), strict=True)
        ]

    def _categorical_labels(self) -> list[list[str]]:
        return [_unique([*index, "(unseen)", "(missing)"]) for index in self._categories]

    @classmethod
    def from_distributions(cls, distributions: Mapping[str, Any], numeric: Sequence[str], categorical: Sequence[str]) -> DriftProfile:
        """Build the profile from the summaries :func:`~hmlcore.model.distributions.describe_distributions` made."""
        return cls(distributions, numeric, categorical)

    @classmethod
    def from_container(cls, container: ModelContainer) -> DriftProfile:
        """Build the profile of a trained or loaded container.

        Raises:
            ConfigError: the container holds no training distributions.
        """
        if not container.distributions:
            raise ConfigError(
                f"model {container.name!r} has no training distributions: load a published model (or analyse training data) first"
            )
        return cls(container.distributions, container.features_numeric, container.features_categorical)

    @property
    def features(self) -> list[str]:
        """Every feature, numeric first (the column order of the codes)."""
        return self.numeric + self.categorical

    # ----------------------------------------------------------------- rows -> slot codes
    def _numeric_codes(self, values: np.ndarray, n: int) -> np.ndarray:
        if not self.numeric:
            return np.empty((n, 0), dtype=np.int32)
        x = np.asarray(values, dtype=np.float32).reshape(n, len(self.numeric))
        codes = np.empty((n, len(self.numeric)), dtype=np.int32)
        for j, edges in enumerate(self._edges):
            column = np.ascontiguousarray(x[:, j])
            code = 1 + np.searchsorted(edges[1:-1], column, side="right")
            code[column < self._lo[j]] = 0
            code[column > self._hi[j]] = self._above[j]
            code[np.isnan(column)] = self._above[j] + 1
            codes[:, j] = code + self.offsets[j]
        return codes

    def _categorical_codes(self, columns: Iterable[Sequence[Any]], n: int) -> np.ndarray:
        out = np.empty((n, len(self.categorical)), dtype=np.int32)
        for j, (index, column) in enumerate(zip(self._categories, columns, strict=True)):
            unseen, missing, offset = len(index), len(index) + 1, self.offsets[len(self.numeric) + j]
            out[:, j] = [offset + (missing if (text := as_category(v)) is None else index.get(text, unseen)) for v in column]
        return out

    def codes_from_request(
        self,
        features: np.ndarray,
        records: Sequence[Mapping[str, Any]],
        defaults: Mapping[str, Any],
        *,
        categories: Mapping[str, Sequence[str]] | None = None,
    ) -> np.ndarray | list[list[int]]:
        """Slot codes of a served batch: numeric values from the encoded matrix, categories from the records.

        A small batch (most requests are one row) is coded in plain Python, a larger one with numpy: the
        codes are the same, the small one just skips numpy's per-call cost. Given the encoder's
        ``categories`` (the order of its one-hot columns, after the numeric ones), a large batch reads the
        known categories from ``features`` and looks at the records only for rows with none.
        """
        n = len(records)
        if n <= _SMALL_BATCH:
            return self._small_codes(features, records, defaults)
        numeric = self._numeric_codes(features[:, : len(self.numeric)], n)
        widths = [len(categories.get(f, ())) for f in self.categorical] if categories is not None else []
        if categories is None or not all(widths) or features.shape[1] != len(self.numeric) + sum(widths):
            columns = ([r.get(f, defaults.get(f)) for r in records] for f in self.categorical)
            return np.concatenate([numeric, self._categorical_codes(columns, n)], axis=1)
        if not self.categorical:
            return numeric
        one_hot = features[:, len(self.numeric) :]
        starts = np.cumsum([0, *widths[:-1]])
        to_slot = np.concatenate(
            [[offset + index.get(str(name), len(index)) for name in categories[feature]] for feature, index, offset in self._categorical_py]
        ).astype(np.int32)
        hot = np.add.reduceat(one_hot, starts, axis=1)  # 1 where a known category is set, 0 where none is
        column = np.add.reduceat(one_hot * np.arange(one_hot.shape[1], dtype=np.float32), starts, axis=1)
        out = to_slot[column.astype(np.int64)]
        for i, j in np.argwhere(hot <= 0).tolist():  # no known category: missing, or unseen (under the "ignore" policy)
            feature, index, offset = self._categorical_py[j]
            text = as_category(records[i].get(feature, defaults.get(feature)))
            out[i, j] = offset + (len(index) + 1 if text is None else index.get(text, len(index)))
        return np.concatenate([numeric, out], axis=1)

    def _small_codes(self, features: np.ndarray, records: Sequence[Mapping[str, Any]], defaults: Mapping[str, Any]) -> list[list[int]]:
        out = []
        for values, record in zip(features[:, : len(self.numeric)].tolist(), records, strict=True):
            row = []
            for v, (inner, lo, hi, above, offset) in zip(values, self._numeric_py, strict=True):
                if v != v:  # NaN: missing
                    code = above + 1
                elif v > hi:
                    code = above
                elif v < lo:
                    code = 0
                else:
                    code = 1 + bisect.bisect_right(inner, v)
                row.append(offset + code)
            for feature, index, offset in self._categorical_py:
                text = as_category(record.get(feature, defaults.get(feature)))
                row.append(offset + (len(index) + 1 if text is None else index.get(text, len(index))))
            out.append(row)
        return out

    def codes_from_frame(self, df: pd.DataFrame) -> np.ndarray:
        """Slot codes of every row of ``df`` (which must hold every feature).

        Raises:
            ConfigError: a feature column is missing or a numeric column holds text.
        """
        missing = [f for f in self.features if f not in df.columns]
        if missing:
            raise ConfigError(f"the data lacks feature column(s) {', '.join(missing)}")
        try:
            numeric = df[self.numeric].apply(lambda s: s.astype("float64")).to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"a numeric feature column holds values that are not numbers: {exc}") from exc
        columns = (df[f].astype(object).where(df[f].notna(), None).tolist() for f in self.categorical)
        return np.concatenate([self._numeric_codes(numeric, len(df)), self._categorical_codes(columns, len(df))], axis=1)

    def counts(self, codes: np.ndarray) -> np.ndarray:
        """How many rows fall in each slot."""
        return np.bincount(np.asarray(codes, dtype=np.int64).ravel(), minlength=self.slots)

    # ----------------------------------------------------------------- slot counts -> report
    def evaluate(self, counts: np.ndarray, *, thresholds: DriftThresholds | None = None) -> DriftReport:
        """Judge the drift of the rows counted in ``counts`` (one entry per slot)."""
        thresholds = thresholds or DriftThresholds()
        counts = np.asarray(counts, dtype=np.float64)
        features: dict[str, FeatureDrift] = {}
        rows = 0
        for j, feature in enumerate(self.features):
            start = self.offsets[j]
            end = self.offsets[j + 1] if j + 1 < len(self.offsets) else self.slots
            slot_counts = counts[start:end]
            rows = max(rows, int(slot_counts.sum()))
            if j < len(self.numeric):
                features[feature] = self._numeric_drift(feature, slot_counts)
            else:
                features[feature] = self._categorical_drift(feature, slot_counts, self._categories[j - len(self.numeric)])
            judge(features[feature], thresholds)
        status = max((f.status for f in features.values()), key=STATUSES.index, default="pending")
        return DriftReport(rows=rows, status=status, features=features, thresholds=thresholds)

    def _numeric_drift(self, feature: str, c: np.ndarray) -> FeatureDrift:
        stats = self.stats[feature]
        rows, present = int(c.sum()), float(c[:-1].sum())
        edges = stats.get("histogram", {}).get("edges", [])
        training = np.asarray(stats.get("histogram", {}).get("counts", []), dtype=np.float64)
        drift = FeatureDrift(feature, "numeric", rows, "ok", None, _share(c[-1], rows), _training_missing(stats))
        if not len(training) or training.sum() == 0:
            return drift
        expected = training / training.sum()
        if present:
            bins = c[1:-2].copy()
            bins[0] += c[0]
            bins[-1] += c[-2]
            drift.psi = psi(expected, bins / present)
            drift.out_of_range = float((c[0] + c[-2]) / present)
        labels = (
            [f"< {_num(stats.get('min', edges[0]))}"]
            + [f"{_num(a)} to {_num(b)}" for a, b in zip(edges[:-1], edges[1:], strict=False)]
            + [f"> {_num(stats.get('max', edges[-1]))}"]
        )
        drift.labels, drift.expected = labels, [0.0, *expected.tolist(), 0.0]
        drift.actual = (c[:-1] / present).tolist() if present else [0.0] * len(labels)
        return drift

    def _categorical_drift(self, feature: str, c: np.ndarray, index: Mapping[str, int]) -> FeatureDrift:
        stats = self.stats[feature]
        rows, present, known = int(c.sum()), float(c[:-1].sum()), float(c[:-2].sum())
        frequencies = stats.get("frequencies", {})
        expected = np.array([frequencies.get(name, 0.0) for name in index], dtype=np.float64)
        drift = FeatureDrift(feature, "categorical", rows, "ok", None, _share(c[-1], rows), _training_missing(stats))
        if present:
            drift.unseen = float(c[-2] / present)
        if known and expected.sum() > 0:
            drift.psi = psi(expected / expected.sum(), c[:-2] / known)
        drift.labels, drift.expected = [*index, "(unseen)"], [*expected.tolist(), 0.0]
        drift.actual = (c[:-1] / present).tolist() if present else [0.0] * len(drift.labels)
        return drift


def _unique(labels: list[str]) -> list[str]:
    """``labels``, or the slots' numbers if two labels are the same (a category named like a slot, bins closer than 6 digits)."""
    return labels if len(set(labels)) == len(labels) else [f"#{i}" for i in range(len(labels))]


def _share(part: float, whole: float) -> float | None:
    return float(part / whole) if whole else None


def _training_missing(stats: Mapping[str, Any]) -> float | None:
    total = stats.get("count", 0) + stats.get("missing", 0)
    return _share(stats.get("missing", 0), total)


def _num(value: float) -> str:
    return f"{value:.4g}"
