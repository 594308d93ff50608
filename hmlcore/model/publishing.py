"""Publishing a version: its artifacts, its record in the registry, the gate's decision and the pointer's move.

:func:`publish` is what :meth:`~hmlcore.model.container.ModelContainer.publish` does: it checks everything a
user can get wrong before it writes anything, saves the artifacts (:func:`hmlcore.model.artifacts.save`),
records the version with its lineage and the rows it trained on (:mod:`hmlcore.model.registry`), asks the
gate (:func:`hmlcore.model.gate.decide`) and moves the pointer if the version is promoted.

Example:
    >>> published = publish(container, run_id="run-1", metrics={"auc": 0.8})  # doctest: +SKIP
    >>> published.decision.status  # doctest: +SKIP
    'champion'
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError, ModelLoadError
from hmlcore.model import artifacts
from hmlcore.model.gate import Decision, decide, decision_dict, score
from hmlcore.model.promotion import PromotionRule
from hmlcore.model.registry import ModelRegistry, check_lineage, lineage

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from hmlcore.model.container import ModelContainer
else:
    np = lazy_module("numpy")

__all__ = ["Published", "publish"]


@dataclass(frozen=True)
class Published:
    """A published version: its reference, the reference's URI and the gate's decision."""

    reference: dict[str, Any]
    uri: str
    decision: Decision


def publish(
    container: ModelContainer,
    *,
    run_id: str | None = None,
    git_commit: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    promote: bool | Mapping[str, Any] | PromotionRule = True,
    holdout: pd.DataFrame | None = None,
    force: bool = False,
    lineage_given: Mapping[str, Any] | None = None,
    training_rows: Any = None,
) -> Published:
    """Publish ``container``'s model (the options are :meth:`~hmlcore.model.container.ModelContainer.publish`'s).

    Raises:
        ModelLoadError: no model is bound.
        ConfigError: the features or the target were never analysed, a metric is not a number, the rule or
            the lineage is malformed, the signing key is invalid, or the lake cannot be written.
        UntrustedModelError: no safe format can hold the model and ``HML_ALLOW_PICKLE`` is not set.
    """
    if container.model is None:
        raise ModelLoadError(f"model {container.name!r} has nothing to publish: call bind_model() first")
    if not container.distributions:
        raise ConfigError(f"model {container.name!r} has no feature analysis to publish: call analyze_distributions() first")
    if not container.target_info.fitted:
        raise ConfigError(
            f"model {container.name!r} has no analysis of its target {container.target!r} to publish: "
            "call analyze_distributions() on the training rows"
        )
    if metrics:
        container.metrics = numeric_metrics(metrics)
    rule = None if isinstance(promote, bool) else PromotionRule.from_config(promote, kind=container.kind)
    verdict = score(container, holdout) if rule else None  # a bad rule or holdout fails before anything is written
    evaluated = (verdict or {}).get("metrics") or {}
    if rule and rule.metric not in evaluated:
        raise ConfigError(f"the promotion metric {rule.metric!r} is not evaluated: choose one of {', '.join(evaluated)}")
    given = check_lineage(lineage_given)
    run_id = run_id or _env.RUN_ID.get() or f"local-{uuid.uuid4().hex[:8]}"
    git_commit = git_commit or _env.GIT_COMMIT.get() or _git_head() or "unversioned"
    saved = artifacts.save(container, run_id=run_id, git_commit=git_commit)
    record = lineage(container, saved.reference, saved.uri, saved.data, given)
    registry = ModelRegistry(container)
    if training_rows is not None:
        record["training_rows"] = registry.record_training_rows(run_id, training_rows, features=container.features)
    decision = decide(
        container, version=run_id, rule=rule, verdict=verdict, holdout=holdout, record=record, force=force, promote=promote is not False
    )
    registry.record({**record, "decision": decision_dict(decision)})
    if decision.promoted:
        registry.move(run_id, action="publish", reason=decision.reason, verify=False)
    return Published(saved.reference, saved.uri, decision)


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``metrics`` as floats.

    Raises:
        ConfigError: a metric is not a number.
    """
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"metric {key!r} must be a number, got {value!r}")
        out[str(key)] = float(value)
    return out


def _git_head() -> str | None:
    """The current git commit of the working directory, if it is a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    head = done.stdout.strip()
    return head[:12] if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", head) else None
