"""``<entrypoint> models list | show VERSION | promote VERSION | rollback``: the registry in the lake.

::

    crashed models list                      newest first; '*' marks the version in service
    crashed models show local-20261125-...   one version's lineage and the gate's decision
    crashed models promote VERSION --reason "passed the shadow test"
    crashed models rollback --reason "run 42 mislabels trucks"

Every command takes ``--json`` where it prints, and ``--model NAME`` when the package registers more
than one model. Promotion and rollback verify the version (digests, and the signature when a key is
configured) before the pointer moves; a running server picks the move up through its hot reload.
"""

from __future__ import annotations

import json
from typing import Any

import click

from hmlcore.cli._common import CliApp, HmlCliError, guard, registered_model
from hmlcore.model.registry import ModelRegistry

__all__ = ["models_group"]

_MODEL_OPTION = click.option("--model", "model", default=None, help="The registered model (default: the only one).")
_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of text.")


def _registry(app: CliApp, model: str | None) -> ModelRegistry:
    return ModelRegistry(registered_model(app, model))


def models_group(app: CliApp) -> click.Group:
    """The ``models`` group: list, show, promote and roll back published versions."""
    group = click.Group("models", help="The published versions of the model: list, show, promote, roll back.")

    @group.command("list")
    @_MODEL_OPTION
    @_JSON_OPTION
    @guard
    def list_command(model: str | None, as_json: bool) -> None:
        """List the published versions, newest first; '*' marks the one in service."""
        records = _registry(app, model).versions()
        if not records:
            raise HmlCliError("no version is published yet: run the training pipeline first")
        click.echo(json.dumps(records, indent=2, sort_keys=True) if as_json else _table(records))

    @group.command("show")
    @click.argument("version")
    @_MODEL_OPTION
    @_JSON_OPTION
    @guard
    def show_command(version: str, model: str | None, as_json: bool) -> None:
        """Show one version: its lineage, metrics and the gate's decision."""
        record = _registry(app, model).get(version)
        click.echo(json.dumps(record, indent=2, sort_keys=True) if as_json else _details(record))

    @group.command("promote")
    @click.argument("version")
    @click.option("--reason", default=None, help="Why, for the audit log.")
    @_MODEL_OPTION
    @guard
    def promote_command(version: str, reason: str | None, model: str | None) -> None:
        """Put VERSION in service (verified before the pointer moves)."""
        move = _registry(app, model).promote(version, reason=reason)
        click.echo(f"promoted {move['to']} (was {move['from'] or 'none'})")

    @group.command("rollback")
    @click.option("--reason", default=None, help="Why, for the audit log.")
    @_MODEL_OPTION
    @guard
    def rollback_command(reason: str | None, model: str | None) -> None:
        """Put the previous champion back in service (verified before the pointer moves)."""
        move = _registry(app, model).rollback(reason=reason)
        click.echo(f"rolled back to {move['to']} (was {move['from']})")

    return group


def _score(record: dict[str, Any]) -> str:
    decision = record.get("decision") or {}
    rule, scores = decision.get("rule") or {}, decision.get("scores") or {}
    new, old = scores.get("challenger"), scores.get("champion")
    if rule and new is not None:
        versus = f" vs {old:.4g}" if old is not None else ""
        baseline = scores.get("baseline")
        return f"{rule['metric']} {new:.4g}{versus}" + (f" (baseline {baseline:.4g})" if baseline is not None else "")
    metrics = record.get("metrics") or {}
    first = next(iter(sorted(metrics)), None)
    return f"{first} {metrics[first]:.4g}" if first is not None else ""


def _table(records: list[dict[str, Any]]) -> str:
    header = ("", "VERSION", "CREATED (UTC)", "STATUS", "SCORE", "KIND", "COMMIT", "BY")
    rows = [header]
    for r in records:
        rows.append(
            (
                "*" if r.get("serving") else "",
                str(r.get("version")),
                str(r.get("created_at", ""))[:19].replace("T", " "),
                str(r.get("status", "")),
                _score(r),
                str(r.get("kind") or ""),
                str(r.get("git_commit") or "")[:12],
                str(r.get("created_by") or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _details(record: dict[str, Any]) -> str:
    decision = record.get("decision") or {}
    lines = [
        f"version     {record.get('version')}{'  (in service)' if record.get('serving') else ''}",
        f"status      {record.get('status')}",
        f"decision    {decision.get('reason', '')}",
        f"created     {record.get('created_at')} by {record.get('created_by')}",
        f"kind        {record.get('kind') or ''}",
        f"run id      {record.get('run_id')}",
        f"git commit  {record.get('git_commit')}",
        f"image       {record.get('image') or ''}",
        f"reference   {record.get('reference')}",
    ]
    data = record.get("data") or {}
    for key in sorted(data):
        lines.append(f"data        {key}: {data[key]}")
    for key, value in sorted((record.get("parameters") or {}).items()):
        lines.append(f"parameter   {key} = {value}")
    split = record.get("split") or {}
    if split:
        shown = ", ".join(
            f"{key} {split[key]}"
            for key in ("method", "validation_share", "seed", "key", "time", "stratified")
            if split.get(key) is not None
        )
        lines.append(f"split       {shown}; data sha256 {str(split.get('data_sha256', ''))[:12]}")
    rows = record.get("training_rows") or {}
    if rows:
        lines.append(f"trained on  {rows.get('rows')} rows ({rows.get('uri')})")
    evaluation = record.get("evaluation") or {}
    baseline, intervals = evaluation.get("baseline") or {}, evaluation.get("intervals") or {}
    if evaluation:
        lines.append(f"baseline    {evaluation.get('baseline_name', '')}, scored on the same {evaluation.get('rows')} validation rows")
        for reason, count in sorted((evaluation.get("left_out") or {}).items()):
            lines.append(f"left out    {count} validation rows with a {reason}")
        for feature, count in sorted((evaluation.get("unknown_categories") or {}).items()):
            lines.append(f"unseen      {count} validation rows hold a {feature} category training never saw")
    for key, value in sorted((record.get("metrics") or {}).items()):
        if not isinstance(value, (int, float)):
            lines.append(f"metric      {key} = {value}")
            continue
        extra = ""
        if key in intervals:
            extra += f"  (95% interval {intervals[key][0]:.4g} to {intervals[key][1]:.4g})"
        if key in baseline and key != "rows":
            extra += f"  baseline {baseline[key]:.4g}"
        lines.append(f"metric      {key} = {value:.6g}{extra}")
    return "\n".join(lines)
