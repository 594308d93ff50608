"""The champion/challenger gate: when a newly trained model may replace the one in service.

A :class:`PromotionRule` names a metric, whether higher or lower is better, and the least gain over the
champion that earns a promotion. The publish step scores the new model (the challenger) and the model in
service (the champion) on the same held-out rows and promotes only if the rule passes; a first model is
always promoted. The package's ``shared.py`` declares the rule as a plain dict::

    PROMOTION = {"metric": "auc", "min_gain": 0.002}  # direction: "higher" is known for auc

Example:
    >>> rule = PromotionRule.from_config({"metric": "rmse", "min_gain": 0.5}, kind="regression")
    >>> rule.direction, rule.passes(new=9.0, old=10.0), rule.passes(new=9.8, old=10.0)
    ('lower', True, False)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hmlcore.errors import ConfigError

__all__ = ["DEFAULT_RULES", "PromotionRule"]

#: the rule each model kind gets when ``shared.py`` declares none
DEFAULT_RULES: dict[str, dict[str, Any]] = {
    "binary": {"metric": "auc", "min_gain": 0.0, "direction": "higher"},
    "multiclass": {"metric": "log_loss", "min_gain": 0.0, "direction": "lower"},
    "regression": {"metric": "rmse", "min_gain": 0.0, "direction": "lower"},
}
#: metrics whose direction need not be written down
_HIGHER = {"auc", "accuracy", "balanced_accuracy", "precision", "recall", "f1", "macro_f1", "weighted_f1", "r2", "average_precision"}
_LOWER = {"log_loss", "rmse", "mae", "mse", "brier", "mape"}
_DIRECTIONS = ("higher", "lower")


@dataclass(frozen=True)
class PromotionRule:
    """Promote a challenger if its ``metric`` beats the champion's by at least ``min_gain``.

    Args:
        metric: the evaluation metric compared (a key of the evaluation's metrics, e.g. ``auc``, ``rmse``).
        direction: ``"higher"`` or ``"lower"``: which way is better.
        min_gain: the least improvement, in the metric's own units, that earns a promotion (0: any improvement;
            a tie never promotes).
    """

    metric: str
    direction: str = "higher"
    min_gain: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not self.metric:
            raise ConfigError(f"the promotion metric must be a metric's name such as 'auc', got {self.metric!r}")
        if self.direction not in _DIRECTIONS:
            raise ConfigError(f"the promotion direction must be 'higher' or 'lower', got {self.direction!r}")
        gain = self.min_gain
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain) or gain < 0:
            raise ConfigError(f"the promotion min_gain must be a number >= 0, got {gain!r}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | PromotionRule | None, *, kind: str = "binary") -> PromotionRule:
        """The rule ``shared.PROMOTION`` declares, completed with the defaults of the model ``kind``.

        ``direction`` may be left out for the metrics hmlcore knows (``auc``, ``accuracy``, ``macro_f1``,
        ``r2`` are higher-better; ``log_loss``, ``rmse``, ``mae`` lower-better).

        Raises:
            ConfigError: an unknown key, a metric whose direction is unknown and not given, or a bad value.
        """
        if isinstance(config, PromotionRule):
            return config
        if kind not in DEFAULT_RULES:
            raise ConfigError(f"model kind {kind!r} has no default promotion rule: use one of {', '.join(DEFAULT_RULES)}")
        if config is None:
            return cls(**DEFAULT_RULES[kind])
        if not isinstance(config, Mapping):
            raise ConfigError(f'the promotion rule must be a dict such as {{"metric": "auc", "min_gain": 0.002}}, got {config!r}')
        unknown = sorted(set(config) - {"metric", "direction", "min_gain"})
        if unknown:
            raise ConfigError(f"the promotion rule has unknown key(s) {', '.join(map(repr, unknown))}: use metric, direction, min_gain")
        metric = config.get("metric", DEFAULT_RULES[kind]["metric"])
        direction = config.get("direction")
        if direction is None:
            if metric in _HIGHER:
                direction = "higher"
            elif metric in _LOWER:
                direction = "lower"
            else:
                raise ConfigError(f'say whether a higher or lower {metric!r} is better: add "direction": "higher" or "lower"')
        return cls(metric=metric, direction=direction, min_gain=config.get("min_gain", 0.0))

    def gain(self, *, new: float, old: float) -> float:
        """How much better ``new`` is than ``old`` (negative: worse), in the metric's units."""
        return new - old if self.direction == "higher" else old - new

    def passes(self, *, new: float, old: float) -> bool:
        """Whether a challenger scoring ``new`` replaces a champion scoring ``old``.

        A challenger whose score is not a number never passes; a champion whose score is not a number
        is beaten by any challenger that has one. A tie never passes: the gain must be above 0 and at
        least ``min_gain``.
        """
        if not math.isfinite(new):
            return False
        if not math.isfinite(old):
            return True
        gain = self.gain(new=new, old=old)
        return gain > 1e-12 and gain >= self.min_gain - 1e-12

    def to_dict(self) -> dict[str, Any]:
        """The rule as the registry records it."""
        return {"metric": self.metric, "direction": self.direction, "min_gain": self.min_gain}

    def describe(self) -> str:
        """The rule in words, e.g. ``auc higher by >= 0.002``."""
        return f"{self.metric} {self.direction} by >= {self.min_gain:g}"
