"""The drift report offline: the figures ``/drift`` serves, computed over a file or a table of requests.

:func:`drift_report` judges a DataFrame of inputs against a model's training distributions;
:func:`render_text` prints it as a table, :func:`render_html` as one self-contained page (inline CSS and
SVG, nothing fetched from the network) with a small chart per feature: the training share of each bin
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
import html
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hmlcore.serving.drift import DriftProfile, DriftReport, DriftThresholds, FeatureDrift

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.model.container import ModelContainer

__all__ = ["drift_report", "render_html", "render_text"]

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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _shift(feature: FeatureDrift) -> str:
    return _pct(feature.out_of_range if feature.kind == "numeric" else feature.unseen)


def render_text(report: DriftReport, *, model: str, version: str | None = None, source: str | None = None) -> str:
    """The report as a plain-text table, one line per feature, the worst first.

    Example:
        >>> from hmlcore.serving.drift import DriftThresholds
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
    """The report as one self-contained HTML page: a summary table and a chart per feature."""
    e = html.escape
    title = f"Drift of {model}" + (f" {version}" if version else "")
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = "".join(
        f"<tr><td><a href='#f-{e(name)}'>{e(name)}</a></td><td>{f.kind}</td>{_badge_cell(f.status)}<td>{_num(f.psi)}</td>"
        f"<td>{_shift(f)}</td><td>{_pct(f.training_missing)} &rarr; {_pct(f.missing)}</td><td>{e('; '.join(f.reasons))}</td></tr>"
        for name, f in _worst_first(report)
    )
    cards = "".join(
        f"<section id='f-{e(name)}'><h2>{e(name)} <span class='badge' style='background:{_COLOURS[f.status]}'>{f.status}</span></h2>"
        f"<p>{f.kind}; psi {_num(f.psi)}; {'out of range' if f.kind == 'numeric' else 'unseen'} {_shift(f)}; "
        f"missing {_pct(f.training_missing)} in training, {_pct(f.missing)} now</p>{_chart(f)}</section>"
        for name, f in _worst_first(report)
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
.badge {{ color: #fff; border-radius: 3px; padding: 1px 6px; font-size: 12px; }}
section {{ display: inline-block; vertical-align: top; width: 440px; margin: 0 1.5em 1.5em 0; }}
h2 {{ font-size: 16px; margin-bottom: 0.2em; }} p {{ margin: 0 0 0.4em; color: #555; }}
.legend span {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }}
</style></head><body>
<h1>{e(title)}: <span class="badge" style="background:{_COLOURS[report.status]}">{report.status}</span></h1>
<p>{report.rows} rows{(" from " + e(source)) if source else ""}, compared with the training distributions; made {when}.
<span class="legend"><span style="background:#9e9e9e"></span>training<span style="background:#1565c0"></span>current</span></p>
<table><tr><th>feature</th><th>kind</th><th>status</th><th>psi</th><th>out of range / unseen</th><th>missing</th><th>why</th></tr>
{summary}</table>
{cards}
</body></html>
"""


def _badge_cell(status: str) -> str:
    return f"<td><span class='badge' style='background:{_COLOURS[status]}'>{status}</span></td>"


def _chart(feature: FeatureDrift, *, width: int = 420, height: int = 170) -> str:
    """Grouped bars, training beside current, one group per bin or category; hover a bar for its share."""
    if not feature.labels:
        return "<p>no training histogram to compare with</p>"
    e = html.escape
    n = len(feature.labels)
    top = max([*feature.expected, *feature.actual, 0.01])
    plot_h, base = height - 56, height - 42
    group = (width - 20) / n
    bar = max(1.0, group * 0.38)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='{e(feature.feature)}'>"]
    parts.append(f"<line x1='10' y1='{base}' x2='{width - 10}' y2='{base}' stroke='#999'/>")
    for i, (label, expected, actual) in enumerate(zip(feature.labels, feature.expected, feature.actual, strict=True)):
        x = 10 + i * group + group * 0.1
        for j, (share, colour, who) in enumerate(((expected, "#9e9e9e", "training"), (actual, "#1565c0", "current"))):
            h = plot_h * share / top
            parts.append(
                f"<rect x='{x + j * bar:.1f}' y='{base - h:.1f}' width='{bar:.1f}' height='{h:.1f}' fill='{colour}'>"
                f"<title>{e(label)}: {who} {100 * share:.1f}%</title></rect>"
            )
        if n <= 14:
            text = label if len(label) <= 12 else label[:11] + "…"
            parts.append(
                f"<text x='{x + bar:.1f}' y='{base + 12}' font-size='9' text-anchor='middle' "
                f"transform='rotate(20 {x + bar:.1f} {base + 12})'>{e(text)}</text>"
            )
    parts.append(f"<text x='12' y='12' font-size='10' fill='#555'>max {100 * top:.0f}%</text></svg>")
    return "".join(parts)
