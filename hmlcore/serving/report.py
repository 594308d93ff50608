"""The drift report offline: the figures ``/drift`` serves, computed over a file or a table of requests.

:func:`drift_report` judges a DataFrame of inputs against a model's training distributions;
:func:`render_text` prints it as a table, :func:`render_html` as one self-contained page (``templates/drift.html``: inline CSS
and SVG, nothing fetched from the network) with a small chart per feature: the training share of each bin
or category beside the current share.

Example:
    >>> import pandas as pd
    >>> from hmlcore.model import ModelContainer
    >>> c = ModelContainer("m", "p", ["x"], ["c"], "y")
    >>> train = pd.DataFrame({"x": [float(i % 7) for i in range(300)], "c": ["a", "b", "c"] * 100})
    >>> report = drift_report(c.analyze_distributions(train), train)
    >>> report.status, render_text(report, model="m").splitlines()[0]
    ('ok', 'drift of model m over 300 rows: ok')
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hmlcore._templates import render_page
from hmlcore.errors import ConfigError
from hmlcore.serving.drift import DriftProfile
from hmlcore.serving.drift_report import DriftReport, DriftThresholds, FeatureDrift

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.model.container import ModelContainer

__all__ = ["DriftTally", "drift_report", "render_html", "render_text"]

_COLOURS = {"pending": "#8a8a8a", "ok": "#2e7d32", "warn": "#e08a00", "alert": "#c62828"}


def drift_report(
    container: ModelContainer, data: pd.DataFrame, *, thresholds: Mapping[str, Any] | DriftThresholds | None = None
) -> DriftReport:
    """Judge the drift of every row of ``data`` against ``container``'s training distributions.

    Features the model has defaults for may be absent from ``data``; they take the default, as in serving.

    Raises:
        ConfigError: the model has no training distributions, or ``data`` lacks a feature.
    """
    profile = DriftProfile.from_container(container)
    absent = {f: v for f, v in container.defaults.items() if f not in data.columns}
    if absent:
        data = data.assign(**absent)
    counts = profile.counts(profile.codes_from_frame(data))
    return profile.evaluate(counts, thresholds=DriftThresholds.from_mapping(thresholds))


class DriftTally:
    """The drift report of rows seen a chunk at a time (batch scoring): counts that add up, judged at the end.

    Args:
        container: the model whose training distributions the rows are judged against.
        counts: tallies already made (e.g. by each shard), to add up.

    Example:
        >>> tally = DriftTally(container)  # doctest: +SKIP
        >>> for chunk in chunks:  # doctest: +SKIP
        ...     tally.add(chunk)
        >>> DriftTally(container, counts=[tally.counts]).report().status  # doctest: +SKIP
        'ok'
    """

    def __init__(self, container: ModelContainer, *, counts: list[list[int]] | None = None) -> None:
        self.container = container
        self.profile = DriftProfile.from_container(container)
        self._counts = [0] * self.profile.slots
        for other in counts or []:
            if len(other) != self.profile.slots:
                raise ConfigError(f"a drift tally of {len(other)} slots does not fit model {container.name!r} ({self.profile.slots} slots)")
            self._counts = [a + int(b) for a, b in zip(self._counts, other, strict=True)]

    def add(self, data: pd.DataFrame) -> None:
        """Count the rows of ``data`` (features the model has defaults for may be absent, as in :func:`drift_report`)."""
        absent = {f: v for f, v in self.container.defaults.items() if f not in data.columns}
        counted = self.profile.counts(self.profile.codes_from_frame(data.assign(**absent) if absent else data))
        self._counts = [a + int(b) for a, b in zip(self._counts, counted.tolist(), strict=True)]

    @property
    def counts(self) -> list[int]:
        """The rows counted in each slot, as JSON-able integers."""
        return list(self._counts)

    def report(self, *, thresholds: Mapping[str, Any] | DriftThresholds | None = None) -> DriftReport:
        """The drift of every row counted, as :func:`drift_report` judges it."""
        import numpy as np

        counts = np.asarray(self._counts, dtype=np.int64)
        return self.profile.evaluate(counts, thresholds=DriftThresholds.from_mapping(thresholds))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _shift(feature: FeatureDrift) -> str:
    return _pct(feature.out_of_range if feature.kind == "numeric" else feature.unseen)


def render_text(report: DriftReport, *, model: str, version: str | None = None, source: str | None = None) -> str:
    """The report as a plain-text table, one line per feature, the worst first.

    Example:
        >>> from hmlcore.serving.drift_report import DriftThresholds
        >>> print(render_text(DriftReport(0, "pending", {}, DriftThresholds()), model="m"))
        drift of model m over 0 rows: pending
        feature  kind  status  psi  out of range / unseen  missing (training -> now)  why
    """
    title = f"drift of model {model}" + (f" version {version}" if version else "") + (f" in {source}" if source else "")
    lines = [f"{title} over {report.rows} rows: {report.status}"]
    header = ["feature", "kind", "status", "psi", "out of range / unseen", "missing (training -> now)", "why"]
    rows = [
        [name, f.kind, f.status, _num(f.psi), _shift(f), f"{_pct(f.training_missing)} -> {_pct(f.missing)}", "; ".join(f.reasons)]
        for name, f in _worst_first(report)
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        lines.append("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _worst_first(report: DriftReport) -> list[tuple[str, FeatureDrift]]:
    order = ["alert", "warn", "ok", "pending"]
    return sorted(report.features.items(), key=lambda item: order.index(item[1].status))


def render_html(report: DriftReport, *, model: str, version: str | None = None, source: str | None = None) -> str:
    """The report as one self-contained HTML page (``templates/drift.html``): a summary table and a chart per feature."""
    features = [
        {
            "name": name,
            "kind": f.kind,
            "status": f.status,
            "psi": _num(f.psi),
            "shift": _shift(f),
            "shift_name": "out of range" if f.kind == "numeric" else "unseen",
            "training_missing": _pct(f.training_missing),
            "missing": _pct(f.missing),
            "reasons": "; ".join(f.reasons),
            "chart": _chart(f),
        }
        for name, f in _worst_first(report)
    ]
    return render_page(
        "drift.html",
        title=f"Drift of {model}" + (f" {version}" if version else ""),
        status=report.status,
        rows=report.rows,
        source=source,
        created=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        colours=_COLOURS,
        features=features,
    )


def _chart(feature: FeatureDrift, *, width: int = 420, height: int = 170) -> dict[str, Any] | None:
    """Grouped bars, training beside current, one group per bin or category; hover a bar for its share."""
    if not feature.labels:
        return None
    n = len(feature.labels)
    top = max([*feature.expected, *feature.actual, 0.01])
    plot_h, base = height - 56, height - 42
    group = (width - 20) / n
    bar = max(1.0, group * 0.38)
    bars, labels = [], []
    for i, (label, expected, actual) in enumerate(zip(feature.labels, feature.expected, feature.actual, strict=True)):
        x = 10 + i * group + group * 0.1
        for j, (share, colour, who) in enumerate(((expected, "#9e9e9e", "training"), (actual, "#1565c0", "current"))):
            h = plot_h * share / top
            bars.append(
                {
                    "x": f"{x + j * bar:.1f}",
                    "y": f"{base - h:.1f}",
                    "width": f"{bar:.1f}",
                    "height": f"{h:.1f}",
                    "colour": colour,
                    "title": f"{label}: {who} {100 * share:.1f}%",
                }
            )
        if n <= 14:
            labels.append({"x": f"{x + bar:.1f}", "text": label if len(label) <= 12 else label[:11] + "…"})
    return {"width": width, "height": height, "base": base, "bars": bars, "labels": labels, "top": f"{100 * top:.0f}"}
