"""The promotion gate: whether a newly published version replaces the champion, and why, in one line.

:func:`decide` applies a :class:`~hmlcore.model.promotion.PromotionRule`: a model that does not beat its
baseline is refused; a first model is promoted; the same inputs as the champion are "no change"; otherwise
both models are scored on the validation rows whose feature values neither trained on (what each version
trained on is kept by the registry, see :meth:`~hmlcore.model.registry.ModelRegistry.record_training_rows`)
and the challenger is promoted only if its gain passes the rule. The gate reads the registry; it writes
nothing: :func:`hmlcore.model.publishing.publish` records the :class:`Decision` and moves the pointer.

Example:
    >>> decision = decide(container, version="run-2", rule=rule, verdict=verdict, holdout=validation)  # doctest: +SKIP
    >>> decision.status, decision.reason  # doctest: +SKIP
    ('champion', 'version run-2 promoted: auc 0.733 vs 0.6852 for the champion run-1 on the 62 validation rows ...')
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError, HmlError, RegistryError
from hmlcore.model.promotion import PromotionRule
from hmlcore.model.registry import ModelRegistry
from hmlcore.model.split import ROW_ID, as_ids, values_ids

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.model.container import ModelContainer

__all__ = ["Decision", "decide", "decision_dict", "score"]


@dataclass(frozen=True)
class Decision:
    """What the gate decided about a newly published version.

    Attributes:
        version: the new version.
        status: ``champion`` (promoted), ``challenger`` (published without a promotion), ``unchanged`` (the
            same inputs as the champion) or ``rejected``.
        reason: one line saying why, fit to print.
        champion: the version in service before (None for a first model).
        scores: the rule's metric for ``challenger``, ``champion`` and ``baseline``; with a champion, the ``rows``
            both were scored on (rows whose feature values neither trained on) out of ``validation_rows``,
            how many were ``seen_by_champion`` and ``seen_by_challenger``, how each model's training rows were
            ``matched_by`` (``values``, or ``identity`` for an older record), the ``gain`` and its 95% ``interval``.
        rule: the rule applied (None when no rule was).
        forced: whether the promotion was forced.
    """

    version: str
    status: str
    reason: str
    champion: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    rule: dict[str, Any] | None = None
    forced: bool = False

    @property
    def promoted(self) -> bool:
        """Whether the pointer now names this version."""
        return self.status == "champion"


def decide(
    container: ModelContainer,
    *,
    version: str,
    rule: PromotionRule | None,
    verdict: Mapping[str, Any] | None,
    holdout: pd.DataFrame | None,
    record: Mapping[str, Any] | None = None,
    force: bool = False,
    promote: bool = True,
) -> Decision:
    """Decide whether the newly published ``version`` of ``container`` replaces the champion.

    Under a ``rule``, in this order: a challenger whose metric does not beat its baseline (``verdict``,
    see :func:`~hmlcore.model.assessment.assess`) is rejected; a first model is promoted; a challenger
    trained on the same inputs as the champion (the same model, or the same data, split, parameters and
    code: ``record`` against the champion's record) is ``unchanged``; otherwise the champion is loaded into
    a copy of ``container`` and both are scored on the ``holdout`` rows whose feature values neither the
    champion nor this version trained on (the hashes their records name, see :func:`_unseen_by`; for a
    record from before those, the rows whose :data:`~hmlcore.model.split.ROW_ID` it names), and the
    challenger is promoted only if its gain passes the rule; the line says how many rows were compared. When no such row is left the gate
    refuses and says what to do. ``force`` promotes in every case; a champion that can no longer be
    loaded or scored (other features, a broken artifact) is replaced, and the reason says so.
    """
    from hmlcore.model.assessment import compare  # numpy: the CLI imports the container, and --help must not load numpy

    registry = ModelRegistry(container)
    champion = registry.champion()
    rule_dict = rule.to_dict() if rule else None
    metrics = dict((verdict or {}).get("metrics") or {})
    baseline = dict((verdict or {}).get("baseline") or {})
    new = float(metrics[rule.metric]) if rule and rule.metric in metrics else None
    scores: dict[str, Any] = {"challenger": new, "champion": None}
    if rule and rule.metric in baseline:
        scores["baseline"] = float(baseline[rule.metric])

    def made(status: str, reason: str) -> Decision:
        return Decision(version, status, reason, champion, scores, rule_dict, force)

    if not promote:
        return made("challenger", f"version {version} published as a challenger; {champion or 'no version'} stays in service")
    beats = ""
    if rule is not None and new is not None and "baseline" in scores:
        old = scores["baseline"]
        versus = f"{rule.metric} {new:.4g} vs {old:.4g} for {(verdict or {}).get('baseline_name', 'the baseline')}"
        if rule.gain(new=new, old=old) <= 0:
            if force:
                return made("champion", f"version {version} promoted: it does not beat its baseline ({versus}): forced")
            return made("rejected", f"version {version} not promoted: it does not beat its baseline ({versus} on the same rows)")
        beats = f", and beats its baseline ({versus})"
    if champion is None:
        return made("champion", f"version {version} promoted: it is the first model{beats}")
    if rule is None or new is None:
        return made("champion", f"version {version} promoted over {champion}: {'forced' if force else 'no promotion rule'}")
    try:
        champion_record = registry.get(champion) if _recorded(registry, champion) else {}
        if not force and record is not None and _same_inputs(record, champion_record):
            return made(
                "unchanged",
                f"no change: version {version} has the same data, split, parameters and code as {champion}, which stays in service",
            )
        incumbent = copy.copy(container).load(champion_record["reference"] if champion_record else None)
        unseen = _unseen_by(registry, champion_record, record, holdout)
        if unseen.rows is not None and len(unseen.rows) == 0:
            if force:
                return made("champion", f"version {version} promoted: forced (no validation row is unseen by the champion {champion})")
            split = (champion_record.get("split") or {}) if champion_record else {}
            shown = ", ".join(f"{k} {split[k]}" for k in ("seed", "validation_share", "key", "time") if split.get(k) is not None)
            if unseen.challenger == 0:
                return made(
                    "rejected",
                    f"version {version} not promoted: the champion {champion} trained on all {unseen.total} validation rows "
                    f"of this run (or on copies of them), so they cannot be compared fairly; train with the champion's split "
                    f"({shown or 'see models show'}) and data, or pass --param force=true",
                )
            return made(
                "rejected",
                f"version {version} not promoted: each of the {unseen.total} validation rows holds feature values the champion "
                f"{champion} ({unseen.champion} rows) or this version ({unseen.challenger} rows) trained on, so none is new to both: "
                "the data's inputs repeat across the split; if the repeats are one customer's or session's rows, name that "
                "column as shared.SPLIT's key, else compare them with models show and promote by hand, or pass --param force=true",
            )
        compared = compare(container, incumbent, unseen.rows if unseen.rows is not None else holdout, rule)
    except (HmlError, KeyError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return made("champion", f"version {version} promoted: the champion {champion} cannot be scored on these rows ({detail})")
    scores.update(unseen.counts())
    if compared["gain"] is None:
        if force:
            return made("champion", f"version {version} promoted: forced ({rule.metric} cannot be compared on these rows)")
        return made(
            "rejected",
            f"version {version} not promoted: {rule.metric} is not defined on the {compared['rows']} validation rows neither "
            f"it nor the champion {champion} trained on{unseen.describe()}; train with a larger validation_share or the "
            "champion's split, or pass --param force=true",
        )
    scores.update({key: compared[key] for key in ("challenger", "champion", "gain", "interval", "rows")})
    interval = compared["interval"]
    gain = f"a gain of {compared['gain']:+.4g}" + (f" (95% interval {interval[0]:+.4g} to {interval[1]:+.4g})" if interval else "")
    shown = (
        f"{rule.metric} {compared['challenger']:.4g} vs {compared['champion']:.4g} for the champion {champion} "
        f"on the {compared['rows']} validation rows neither trained on{unseen.describe()}, {gain}"
    )
    if force:
        return made("champion", f"version {version} promoted: {shown}: forced")
    if rule.passes(new=compared["challenger"], old=compared["champion"]):
        return made("champion", f"version {version} promoted: {shown} (rule: {rule.describe()})")
    return made("rejected", f"version {version} not promoted: {shown} (rule: {rule.describe()})")


def _same_inputs(record: Mapping[str, Any], champion: Mapping[str, Any]) -> bool:
    """Whether two version records were trained on the same inputs: the same model, or the same data, split,
    parameters, code and hmlcore."""
    model, other = record.get("model_sha256"), champion.get("model_sha256")
    if model and model == other:
        return True
    data, other_data = record.get("data") or {}, champion.get("data") or {}
    if not data.get("sha256") or data.get("sha256") != other_data.get("sha256"):
        return False
    params = {k: v for k, v in (record.get("parameters") or {}).items() if k != "force"}
    other_params = {k: v for k, v in (champion.get("parameters") or {}).items() if k != "force"}
    return bool(
        params == other_params
        and record.get("split") == champion.get("split")
        and record.get("git_commit") not in (None, "unversioned")
        and record.get("git_commit") == champion.get("git_commit")
        and record.get("hmlcore_version") == champion.get("hmlcore_version")
    )


_WHO = {"champion": "the champion", "challenger": "this version"}


@dataclass
class _Unseen:
    """The holdout rows neither model trained on, and how many each model's training left out.

    Attributes:
        rows: those rows; None when neither model names what it trained on (every row is compared).
        total: the holdout's rows.
        champion: rows whose feature values (or, for a record without values, whose identity) the champion
            trained on.
        challenger: rows whose feature values the new version trained on.
        by_identity: who of the two names only its rows' identities (a record from before value hashes):
            copies of its training rows could not be recognised.
    """

    rows: pd.DataFrame | None
    total: int
    champion: int = 0
    challenger: int = 0
    by_identity: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        """What the decision's scores record about the rows."""
        return {
            "validation_rows": self.total,
            "seen_by_champion": self.champion,
            "seen_by_challenger": self.challenger,
            "matched_by": {who: "identity" if shown in self.by_identity else "values" for who, shown in _WHO.items()},
        }

    def describe(self) -> str:
        """`` (of N: ...)``, for the gate's line; empty when every row was compared."""
        if self.rows is None:
            return ""
        said = []
        for who, count in (("champion", self.champion), ("challenger", self.challenger)):
            if _WHO[who] in self.by_identity:
                said.append(f"{count} were {'the champion' if who == 'champion' else 'this version'}'s training rows")
            else:
                said.append(f"{count} hold feature values {_WHO[who]} trained on")
        told = f" (of {self.total}: {', '.join(said)}"
        if self.by_identity:
            names = "name only their" if len(self.by_identity) > 1 else "names only its"
            told += (
                f"; {' and '.join(self.by_identity)} {names} training rows, not their values (published before value "
                "hashes were recorded), so copies of those rows could not be left out"
            )
        return told + ")"


def _unseen_by(
    registry: ModelRegistry, champion: Mapping[str, Any], challenger: Mapping[str, Any] | None, holdout: pd.DataFrame | None
) -> _Unseen:
    """The ``holdout`` rows whose feature values neither the champion (of record ``champion``) nor the new
    version (of record ``challenger``) trained on.

    A model's prediction for a row depends on its features alone, so a row is "seen" when a training row had
    the same feature values, whatever its target: the selection never looks at the label (leaving out
    only the (features, target) pairs a model saw would keep exactly the rows whose label surprised it).
    A record from before value hashes names only its rows' identities: then the rows it trained on are
    left out, not copies of them, and the gate's line says so.
    """
    import numpy as np

    if holdout is None:
        return _Unseen(None, 0)
    keep = np.ones(len(holdout), dtype=bool)
    checked = False
    seen = {"champion": 0, "challenger": 0}
    by_identity = []
    for who, record in (("champion", champion), ("challenger", challenger)):
        if not record:
            continue
        values = registry.training_values(record)
        if values is not None and all(column in holdout.columns for column in values[1]):
            hit = np.isin(values_ids(holdout, values[1]), values[0])
        else:
            trained = registry.training_rows(record)
            if trained is None or ROW_ID not in holdout.columns:
                continue
            hit = np.isin(as_ids(holdout[ROW_ID].to_numpy()), trained)
            by_identity.append(_WHO[who])
        checked = True
        seen[who] = int(hit.sum())
        keep &= ~hit
    if not checked:
        return _Unseen(None, len(holdout))
    return _Unseen(holdout.loc[keep], len(holdout), seen["champion"], seen["challenger"], by_identity)


def _recorded(registry: ModelRegistry, version: str) -> bool:
    try:
        registry.get(version)
    except RegistryError:
        return False
    return True


def score(container: ModelContainer, holdout: pd.DataFrame | None) -> dict[str, Any]:
    """The verdict on ``container``'s model on ``holdout``: metrics, baseline and intervals (see
    :func:`~hmlcore.model.assessment.assess`).

    Raises:
        ConfigError: no held-out rows were given.
    """
    from hmlcore.model.assessment import assess  # numpy: the CLI imports the container, and --help must not load numpy

    if holdout is None:
        raise ConfigError("a promotion rule compares models on held-out rows: pass holdout= (e.g. the validation split)")
    return assess(container, holdout, resamples=0)


def decision_dict(decision: Decision) -> dict[str, Any]:
    """The decision as the version record keeps it."""
    out = asdict(decision)
    out.pop("version")
    return out
