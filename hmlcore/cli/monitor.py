"""``<entrypoint> monitor report``: the drift report of ``/drift``, offline, over a file or a warehouse table.

::

    crashed monitor report --input requests.csv --html drift.html
    crashed monitor report --table scored_requests --fail-on alert

The model, its version and the thresholds are the ones the inference API serves with: the package's
``@hml.inference`` functions run first (they load the model and call ``enable_monitoring``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from hmlcore.cli._common import CliApp, HmlCliError, guard
from hmlcore.serving.monitoring import find_monitor

if TYPE_CHECKING:
    import pandas as pd  # pandas only to read the data file

    from hmlcore.model.container import ModelContainer

__all__ = ["monitor_group"]

_FAIL_ON = ("never", "warn", "alert")


def monitor_group(app: CliApp) -> click.Group:
    """The ``monitor`` group: look at how the served model's inputs drift."""
    group = click.Group("monitor", help="Compare recent inputs with the distributions the model was trained on.")

    @group.command("report")
    @click.option("--input", "input_path", type=click.Path(dir_okay=False), help="A CSV or Parquet file of requests, a column per feature.")
    @click.option("--table", help="A warehouse table of requests instead of a file.")
    @click.option("--html", "html_path", type=click.Path(dir_okay=False), help="Also write the report as a self-contained HTML page here.")
    @click.option("--model", help="The registered model to compare with (default: the one /predict serves).")
    @click.option(
        "--reference", envvar="HML_MODEL_REFERENCE", show_envvar=True, help="The model version's reference (default: the newest published)."
    )
    @click.option(
        "--fail-on",
        type=click.Choice(_FAIL_ON),
        default="never",
        show_default=True,
        help="Exit with code 2 if any feature reaches this status.",
    )
    @guard
    def report_command(
        input_path: str | None, table: str | None, html_path: str | None, model: str | None, reference: str | None, fail_on: str
    ) -> None:
        """Print the drift of each feature in a file or table of requests (and write it as HTML with --html)."""
        from hmlcore.serving.report import drift_report, render_html, render_text  # imported when the command runs: keeps --help light

        if (input_path is None) == (table is None):
            raise HmlCliError("give exactly one of --input FILE or --table NAME")
        if input_path is not None and not os.path.isfile(input_path):
            raise HmlCliError(f"--input {input_path} does not exist")  # before loading the model, which may fail too
        inference_app = app.inference
        inference_app.create_app()
        monitor = find_monitor(inference_app)
        container: ModelContainer = inference_app.get_model(model) if model else (monitor.container if monitor else inference_app.model)
        if reference and reference != container.reference_uri:
            container.load(reference)
        data = _read_input(input_path, container) if input_path else app.warehouse.table(str(table))
        source = input_path or f"table {table}"
        report = drift_report(container, data, thresholds=monitor.thresholds if monitor else None)
        click.echo(render_text(report, model=container.name, version=container.version, source=source))
        if html_path:
            page = render_html(report, model=container.name, version=container.version, source=source)
            try:
                with open(html_path, "w", encoding="utf-8") as handle:
                    handle.write(page)
            except OSError as exc:
                raise HmlCliError(f"cannot write {html_path}: {exc.strerror or exc}") from exc
            click.echo(f"wrote {html_path}", err=True)
        reached = [f.status for f in report.features.values() if f.status in _FAIL_ON]
        if fail_on != "never" and any(_FAIL_ON.index(status) >= _FAIL_ON.index(fail_on) for status in reached):
            raise click.exceptions.Exit(2)

    return group


def _read_input(path: str, container: ModelContainer) -> pd.DataFrame:
    """Read a CSV or Parquet file, categorical columns as text (so "01" stays "01")."""
    import pandas as pd  # pandas only to read the data file

    try:
        if path.lower().endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=dict.fromkeys(container.features_categorical, "string"))
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise HmlCliError(f"cannot read {path}: {exc}") from exc
