"""The drift window: the slot codes of the most recent rows, kept where every worker can read them.

Each gunicorn worker appends its predicted rows' slot codes (see :class:`~hmlcore.serving.drift.DriftProfile`)
to its own :class:`DriftWindow`, a ring buffer in a small memory-mapped file; :func:`read_windows` sums
the windows of every worker, so any worker answers with the drift of all of them.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError
from hmlcore.serving.drift import DriftProfile

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

__all__ = ["DriftWindow", "read_windows", "window_files", "window_path"]

_MAGIC = 0x484D4C44  # "HMLD"
_HEADER = 8  # int64 words: magic, fingerprint, size, features, filled, position, total, pid
#: a worker's window file in the shared folder, by its pid
_FILE = "hml-drift-{pid}.bin"
_FILE_RE = re.compile(r"hml-drift-(\d+)\.bin$")


def window_path(folder: str, pid: int) -> str:
    """The file in which worker ``pid`` keeps its window, in the shared (multiprocess) ``folder``.

    Example:
        >>> window_path("/run/metrics", 42)
        '/run/metrics/hml-drift-42.bin'
    """
    return os.path.join(folder, _FILE.format(pid=pid))


def window_files(folder: str) -> dict[int, str]:
    """Every window file in ``folder``, by the pid of the worker that keeps it."""
    found = {}
    for path in glob.glob(os.path.join(glob.escape(folder), _FILE.format(pid="*"))):
        match = _FILE_RE.search(path)
        if match:
            found[int(match.group(1))] = path
    return found


class DriftWindow:
    """The slot codes of the most recent ``size`` rows, in memory or in a file other processes can read.

    Args:
        profile: the slot layout.
        size: how many rows the window keeps (the oldest are dropped first).
        path: a file to keep the window in (for :func:`read_windows`); in memory if ``None``.

    Example:
        >>> import pandas as pd
        >>> from hmlcore.serving.drift import DriftProfile
        >>> from hmlcore.model.distributions import describe_distributions
        >>> df = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
        >>> window = DriftWindow(DriftProfile(describe_distributions(df, ["x"], []), ["x"], []), size=2)
        >>> window.add(window.profile.codes_from_frame(df)); window.rows
        2
    """

    def __init__(self, profile: DriftProfile, *, size: int, path: str | None = None) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ConfigError(f"the drift window size must be a whole number >= 1, got {size!r}")
        self.profile, self.size, self.path = profile, size, path
        width = len(profile.features)
        if path is None:
            self._data = np.zeros(_HEADER + size * width, dtype=np.int64)
        else:
            self._data = np.memmap(path, dtype=np.int64, mode="w+", shape=(_HEADER + size * width,))
        self._data[:_HEADER] = [_MAGIC, profile.fingerprint, size, width, 0, 0, 0, os.getpid()]
        self._ring = self._data[_HEADER:].reshape(size, width)
        self._lock = threading.Lock()

    @property
    def rows(self) -> int:
        """How many rows the window holds."""
        return int(self._data[4])

    def add(self, codes: np.ndarray | Sequence[Sequence[int]]) -> None:
        """Add rows' slot codes (one row per input row, one column per feature)."""
        codes = codes[-self.size :]
        n = len(codes)
        with self._lock:
            position = int(self._data[5])
            first = min(n, self.size - position)
            if n == 1:
                self._ring[position] = codes[0]
            else:
                self._ring[position : position + first] = codes[:first]
            if n > first:
                self._ring[: n - first] = codes[first:]
            self._data[5] = (position + n) % self.size
            self._data[4] = min(self.size, int(self._data[4]) + n)
            self._data[6] += n

    def counts(self) -> np.ndarray:
        """How many of the window's rows fall in each slot."""
        return self.profile.counts(self._ring[: self.rows])

    def close(self) -> None:
        """Stop keeping the window in its file and remove the file."""
        if self.path is not None:
            del self._ring, self._data
            if os.path.exists(self.path):
                os.unlink(self.path)
            self.path = None
            self._data = np.zeros(_HEADER, dtype=np.int64)


def read_windows(paths: Iterable[str], profile: DriftProfile) -> tuple[np.ndarray, int]:
    """Sum the slot counts of the window files ``paths`` written for ``profile``; return them and how many were read.

    Files written for another slot layout (another model version), unreadable or half-created files are skipped.
    """
    total = np.zeros(profile.slots, dtype=np.int64)
    read = 0
    for path in paths:
        try:
            data = np.fromfile(path, dtype=np.int64)
        except OSError:
            continue
        if len(data) < _HEADER or data[0] != _MAGIC or data[1] != profile.fingerprint or data[3] != len(profile.features):
            continue
        size, width, filled = int(data[2]), int(data[3]), int(data[4])
        if len(data) != _HEADER + size * width or not 0 <= filled <= size:
            continue
        ring = data[_HEADER:].reshape(size, width)[:filled]
        if filled and (ring.min() < 0 or ring.max() >= profile.slots):
            continue
        total += profile.counts(ring)
        read += 1
    return total, read
