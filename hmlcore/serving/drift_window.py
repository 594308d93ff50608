"""The drift window: the slot codes of a worker's most recent rows, and how each new batch changes its counts.

A :class:`DriftWindow` is a ring buffer in the worker's own memory. :meth:`DriftWindow.add` returns the
change of each slot's count (rows in, rows pushed out), which :class:`~hmlcore.serving.metrics.ServingMetrics`
adds to a Prometheus gauge, so that ``/metrics`` and ``/drift`` sum the windows of every live worker.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError
from hmlcore.serving.drift import DriftProfile

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

__all__ = ["DriftWindow"]

_FEW = 8  # rows up to which a batch is added without numpy


class DriftWindow:
    """The slot codes of the most recent ``size`` rows of one process.

    Args:
        profile: the slot layout.
        size: how many rows the window keeps (the oldest are dropped first).

    Example:
        >>> import pandas as pd
        >>> from hmlcore.serving.drift import DriftProfile
        >>> from hmlcore.model.distributions import describe_distributions
        >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
        >>> window = DriftWindow(DriftProfile(describe_distributions(df, ["x"], []), ["x"], []), size=2)
        >>> labels = window.profile.slot_labels
        >>> [(labels[slot], change) for slot, change in window.add(window.profile.codes_from_frame(df))]  # 3 rows in, the last 2 kept
        [(('x', '2 to 2.2'), 1), (('x', '2.8 to 3'), 1)]
        >>> [(labels[slot], change) for slot, change in window.add(window.profile.codes_from_frame(df.head(1)))]
        [(('x', '1 to 1.2'), 1), (('x', '2 to 2.2'), -1)]
    """

    def __init__(self, profile: DriftProfile, *, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"the drift window size must be a whole number >= 1, got {size!r}")
        self.profile, self.size = profile, size
        #: the process the window belongs to (a forked child starts a window of its own)
        self.pid = os.getpid()
        self.rows = 0
        self._position = 0
        self._ring = np.zeros((size, len(profile.features)), dtype=np.int64)

    def add(self, codes: np.ndarray | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
        """Add rows' slot codes (a row per input row, a column per feature); return ``(slot, change)`` of each slot whose count changed."""
        if len(codes) <= _FEW:
            return self._add_few(codes)
        new = np.asarray(codes, dtype=np.int64).reshape(-1, self._ring.shape[1])[-self.size :]
        n = len(new)
        at = (self._position + np.arange(n)) % self.size
        dropped = self._ring[at[n - max(0, self.rows + n - self.size) :]]
        change = np.bincount(new.ravel(), minlength=self.profile.slots) - np.bincount(dropped.ravel(), minlength=self.profile.slots)
        self._ring[at] = new
        self._position = (self._position + n) % self.size
        self.rows = min(self.size, self.rows + n)
        slots = np.flatnonzero(change)
        return list(zip(slots.tolist(), change[slots].tolist(), strict=True))

    def _add_few(self, codes: np.ndarray | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
        """:meth:`add` in plain Python: most requests are one row, for which numpy costs more than it saves."""
        change: Counter[int] = Counter()
        for row in codes:
            if self.rows == self.size:
                change.subtract(self._ring[self._position].tolist())
            change.update(row)
            self._ring[self._position] = row
            self._position = (self._position + 1) % self.size
            self.rows = min(self.size, self.rows + 1)
        return sorted((int(slot), n) for slot, n in change.items() if n)

    def counts(self) -> np.ndarray:
        """How many of the window's rows fall in each slot."""
        return self.profile.counts(self._ring[: self.rows])
