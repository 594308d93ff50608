"""What a drift measurement says: the thresholds it is judged by, each feature's figures and status, the report.

:meth:`~hmlcore.serving.drift.DriftProfile.evaluate` measures each feature (:class:`FeatureDrift`) and :func:`judge`
sets its status against :class:`DriftThresholds`: ``ok``, ``warn`` or ``alert``, or ``pending`` while the window
holds fewer than ``min_rows`` rows. A :class:`DriftReport` holds every feature's drift and the worst status; its
``to_dict`` is what ``/drift`` and ``monitor report`` show.

Example:
    >>> DriftThresholds.from_mapping({"psi": (0.2, 0.3)}).for_feature("age")["psi"]
    (0.2, 0.3)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hmlcore.errors import ConfigError

__all__ = ["STATUSES", "DriftReport", "DriftThresholds", "FeatureDrift", "judge"]

#: statuses from best to worst; ``pending`` means too few rows to judge
STATUSES = ("pending", "ok", "warn", "alert")
_CHECKS = ("psi", "out_of_range", "unseen")


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature's drift is a warning or an alert: each check is a ``(warn, alert)`` pair.

    Attributes:
        psi: population stability index (0.1 / 0.25 are the customary limits).
        out_of_range: share of numeric values outside the training range.
        unseen: share of categorical values never seen in training.
        min_rows: below this many rows in the window every status is ``pending``.
        features: per-feature overrides, e.g. ``{"age": {"psi": (0.2, 0.4)}}``.

    Example:
        >>> DriftThresholds.from_mapping({"psi": (0.2, 0.3)}).for_feature("age")["psi"]
        (0.2, 0.3)
    """

    psi: tuple[float, float] = (0.1, 0.25)
    out_of_range: tuple[float, float] = (0.05, 0.2)
    unseen: tuple[float, float] = (0.01, 0.05)
    min_rows: int = 100
    features: Mapping[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | DriftThresholds | None) -> DriftThresholds:
        """Read thresholds from a plain dict (as a model author writes them in ``shared.py``).

        Raises:
            ConfigError: an unknown key, a pair that is not two numbers with warn <= alert, or a bad ``min_rows``.
        """
        if data is None:
            return cls()
        if isinstance(data, DriftThresholds):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"drift thresholds must be a dict, got {type(data).__name__}")
        unknown = sorted(set(data) - {*_CHECKS, "min_rows", "features"})
        if unknown:
            raise ConfigError(f"unknown drift threshold(s) {', '.join(map(repr, unknown))}: use {', '.join(_CHECKS)}, min_rows, features")
        pairs = {check: _pair(check, data[check]) for check in _CHECKS if check in data}
        min_rows = data.get("min_rows", cls.min_rows)
        if not isinstance(min_rows, int) or isinstance(min_rows, bool) or min_rows < 1:
            raise ConfigError(f"drift threshold min_rows must be a whole number >= 1, got {min_rows!r}")
        features = data.get("features") or {}
        if not isinstance(features, Mapping):
            raise ConfigError(f"drift threshold 'features' must be a dict of feature -> thresholds, got {type(features).__name__}")
        overrides: dict[str, dict[str, tuple[float, float]]] = {}
        for name, checks in features.items():
            if not isinstance(checks, Mapping) or set(checks) - set(_CHECKS):
                raise ConfigError(
                    f"drift thresholds of feature {name!r} must be a dict with keys among {', '.join(_CHECKS)}, got {checks!r}"
                )
            overrides[str(name)] = {check: _pair(f"{name}.{check}", value) for check, value in checks.items()}
        return cls(**pairs, min_rows=min_rows, features=overrides)

    def for_feature(self, name: str) -> dict[str, tuple[float, float]]:
        """The ``(warn, alert)`` pair of every check for feature ``name``, overrides applied."""
        return {"psi": self.psi, "out_of_range": self.out_of_range, "unseen": self.unseen, **self.features.get(name, {})}

    def to_dict(self) -> dict[str, Any]:
        """The thresholds as JSON-able data."""
        return {
            **{check: list(getattr(self, check)) for check in _CHECKS},
            "min_rows": self.min_rows,
            "features": {name: {k: list(v) for k, v in checks.items()} for name, checks in self.features.items()},
        }


def _pair(name: str, value: Any) -> tuple[float, float]:
    ok = (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )
    if not ok or not 0 <= value[0] <= value[1]:
        raise ConfigError(f"drift threshold {name} must be a (warn, alert) pair of numbers with 0 <= warn <= alert, got {value!r}")
    return float(value[0]), float(value[1])


@dataclass
class FeatureDrift:
    """The drift of one feature: its figures, its status and why."""

    feature: str
    kind: str
    rows: int
    status: str
    psi: float | None
    missing: float | None
    training_missing: float | None
    out_of_range: float | None = None
    unseen: float | None = None
    reasons: list[str] = field(default_factory=list)
    #: for charts: the slot labels, the training share and the current share of each
    labels: list[str] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    actual: list[float] = field(default_factory=list)

    def to_dict(self, *, detail: bool = False) -> dict[str, Any]:
        """The figures as JSON-able data (with the per-slot shares if ``detail``)."""
        out: dict[str, Any] = {"kind": self.kind, "status": self.status, "rows": self.rows, "psi": _round(self.psi)}
        if self.kind == "numeric":
            out["out_of_range"] = _round(self.out_of_range)
        else:
            out["unseen"] = _round(self.unseen)
        out.update(missing=_round(self.missing), training_missing=_round(self.training_missing), reasons=self.reasons)
        if detail:
            out["bins"] = [
                {"label": lb, "training": _round(e), "current": _round(a)}
                for lb, e, a in zip(self.labels, self.expected, self.actual, strict=True)
            ]
        return out


@dataclass
class DriftReport:
    """Every feature's drift over a set of rows; ``status`` is the worst feature's."""

    rows: int
    status: str
    features: dict[str, FeatureDrift]
    thresholds: DriftThresholds

    def to_dict(self, *, detail: bool = False) -> dict[str, Any]:
        """The report as JSON-able data."""
        return {
            "status": self.status,
            "rows": self.rows,
            "drifting": [name for name, f in self.features.items() if f.status in ("warn", "alert")],
            "features": {name: f.to_dict(detail=detail) for name, f in self.features.items()},
            "thresholds": self.thresholds.to_dict(),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def judge(drift: FeatureDrift, thresholds: DriftThresholds) -> None:
    """Set ``drift``'s status and reasons: the worst level any of its checks reaches, ``pending`` below ``min_rows``."""
    if drift.rows < thresholds.min_rows:
        drift.status = "pending"
        drift.reasons = [f"{drift.rows} rows, fewer than min_rows {thresholds.min_rows}"]
        return
    level = 1
    for check, (warn, alert) in thresholds.for_feature(drift.feature).items():
        value = getattr(drift, check)
        if value is None:
            continue
        if value >= alert:
            level = max(level, 3)
            drift.reasons.append(f"{check} {value:.3g} >= alert {alert:g}")
        elif value >= warn:
            level = max(level, 2)
            drift.reasons.append(f"{check} {value:.3g} >= warn {warn:g}")
    drift.status = STATUSES[level]
