"""The model registry, kept in the lake itself: published versions, the champion pointer and its audit log.

No server and no database: four kinds of objects under the model's folder, each written whole and
atomically, so the registry works the same on a local folder, ``gs://`` and ``s3://``::

    models/<project>/<name>/current.json                        the pointer: the version in service
    models/<project>/<name>/registry/versions/<version>.json    one record per published version, written once
    models/<project>/<name>/registry/moves/<time>-<id>.json     one record per pointer move, written once
    models/<project>/<name>/registry/training-rows/<version>.npy the identities of the rows a version trained on

A version record holds the lineage (run id, git commit, image, pipeline parameters, data source and
digest, the split, metrics with their baseline and intervals, model kind, who and when) and the gate's
decision (champion, challenger, unchanged or rejected, with the scores and the gain's interval). A move
record says who moved the pointer, when, from which version to which and why. Nothing is ever rewritten
except the pointer, and that is one put; readers list a folder and read whole objects, so no reader
sees a half-written record and no two writers edit the same object (two people promoting at the same
moment both get their move logged; the later pointer write wins).

Example:
    >>> registry = ModelRegistry(shared.model_container())  # doctest: +SKIP
    >>> [v["version"] for v in registry.versions()]  # doctest: +SKIP
    ['run-3', 'run-2', 'run-1']
    >>> registry.rollback(reason="run-3 mislabels trucks")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import datetime as _dt
import getpass
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore.errors import ConfigError, HmlError, RegistryError
from hmlcore.model.promotion import PromotionRule
from hmlcore.storage.lake import sha256_bytes

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.model.container import ModelContainer

__all__ = ["Decision", "ModelRegistry", "current_user", "decide"]

#: the version of the records' layout
RECORD_SCHEMA = 1
_ACTIONS = ("publish", "promote", "rollback")


def current_user() -> str:
    """Who is acting: ``$HML_USER``, else the login name (``getpass.getuser``: ``$LOGNAME``, ``$USER``...), else ``unknown``."""
    user = _env.USER.get()
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


def _file_name(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", version)[:120] + ".json"


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
            both were scored on (rows neither trained on), the ``gain`` and its 95% ``interval``.
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


class ModelRegistry:
    """The registry of one model container's published versions in its lake.

    Args:
        container: the model (its lake, project and name place the registry; promotions verify a version
            by loading it into a copy of this container, so digests and signatures are checked exactly as
            the server checks them).
    """

    def __init__(self, container: ModelContainer) -> None:
        self.container = container
        self.lake = container.lake
        self.pointer_path = container.current_path
        folder = self.pointer_path.rsplit("/", 1)[0]
        self.versions_folder = f"{folder}/registry/versions"
        self.moves_folder = f"{folder}/registry/moves"
        self.rows_folder = f"{folder}/registry/training-rows"

    def __repr__(self) -> str:
        return f"ModelRegistry({self.lake.uri(self.versions_folder)!r})"

    # ----------------------------------------------------------------- reading
    def _read(self, path: str, what: str) -> dict[str, Any]:
        try:
            data = json.loads(self.lake.read_bytes(path))
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{what} {self.lake.uri(path)} cannot be read: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"{what} {self.lake.uri(path)} is not a JSON object")
        return data

    def pointer(self) -> dict[str, Any] | None:
        """The pointer's content (``reference``, ``version``, ...), or None if no version is in service."""
        try:
            return self._read(self.pointer_path, "the pointer")
        except FileNotFoundError:
            return None

    def champion(self) -> str | None:
        """The version in service (the pointer's), or None."""
        pointer = self.pointer()
        if pointer is None:
            return None
        if isinstance(pointer.get("version"), str):
            return str(pointer["version"])
        # a pointer written before the registry names only the reference: its version is in the reference
        reference = pointer.get("reference")
        if not isinstance(reference, str):
            raise RegistryError(f"the pointer {self.lake.uri(self.pointer_path)} names no reference")
        try:
            version = self._read(reference, "the reference").get("version")
        except FileNotFoundError:
            raise RegistryError(f"the pointer names reference {reference}, which does not exist") from None
        return str(version) if version is not None else None

    def versions(self) -> list[dict[str, Any]]:
        """Every recorded version, newest first, each with ``status`` and ``serving`` as of now.

        ``status`` is ``champion`` for the version in service, ``retired`` for one that was in service
        before, else what the gate recorded (``rejected`` or ``challenger``).
        """
        records = self._read_folder(self.versions_folder, "version record")
        champion = self.champion()
        ever = {m.get("to") for m in self.moves()}
        for record in records:
            self._annotate(record, champion, ever)
        return sorted(records, key=lambda r: (str(r.get("created_at", "")), str(r.get("version", ""))), reverse=True)

    def get(self, version: str) -> dict[str, Any]:
        """The record of ``version``, with its ``status`` and ``serving`` as of now.

        Raises:
            RegistryError: no such version (the message lists the newest few).
        """
        if not isinstance(version, str) or not version:
            raise RegistryError(f"a version is a run id such as 'local-20260101-120000-abc123', got {version!r}")
        try:
            record = self._read(f"{self.versions_folder}/{_file_name(version)}", "version record")
        except FileNotFoundError:
            record = {}
        if record.get("version") != version:
            known = [r["version"] for r in self.versions()[:5]]
            hint = f"the newest: {', '.join(known)}" if known else "the registry is empty: run the training pipeline first"
            raise RegistryError(f"no version {version!r} of model {self.container.name!r} in {self.lake.url} ({hint})")
        self._annotate(record, self.champion(), {m.get("to") for m in self.moves()})
        return record

    @staticmethod
    def _annotate(record: dict[str, Any], champion: str | None, ever: set[Any]) -> None:
        version = record.get("version")
        record["serving"] = version == champion
        recorded = (record.get("decision") or {}).get("status", "challenger")
        record["status"] = "champion" if version == champion else "retired" if version in ever else recorded

    def moves(self) -> list[dict[str, Any]]:
        """The audit log: every pointer move, oldest first."""
        return self._read_folder(self.moves_folder, "move record")

    def _read_folder(self, folder: str, what: str) -> list[dict[str, Any]]:
        """Every JSON record in ``folder``, in the lake's listing order (one deleted meanwhile is skipped)."""
        records = []
        for name in self.lake.list_files(folder):
            if name.endswith(".json"):
                try:
                    records.append(self._read(f"{folder}/{name}", what))
                except FileNotFoundError:
                    continue
        return records

    def champions(self) -> list[str]:
        """The champion history as a stack, oldest first, ending with the version in service.

        A promotion pushes its version; a rollback pops back to the version it went to.
        """
        stack: list[str] = []
        for move in self.moves():
            to = move.get("to")
            if not isinstance(to, str):
                continue
            if move.get("action") == "rollback":
                while stack and stack[-1] != to:
                    stack.pop()
                if not stack:
                    stack.append(to)
            else:
                stack.append(to)
        champion = self.champion()
        if champion is not None and (not stack or stack[-1] != champion):
            stack.append(champion)  # the pointer was moved outside the registry
        return stack

    # ----------------------------------------------------------------- writing
    def record(self, record: Mapping[str, Any]) -> str:
        """Write a version's record (once per version; the lake write is atomic); return its URI."""
        version = record.get("version")
        if not isinstance(version, str) or not version:
            raise RegistryError(f"a version record needs a 'version', got {version!r}")
        body = {k: v for k, v in record.items() if k not in ("status", "serving")}
        return self.lake.write_bytes(f"{self.versions_folder}/{_file_name(version)}", _json(body))

    def record_training_rows(self, version: str, ids: Any) -> dict[str, Any]:
        """Keep the identities of the rows ``version`` trained on (see :mod:`hmlcore.model.split`), sorted, as one
        ``.npy`` object; return what its record names (``uri``, ``sha256``, ``rows``)."""
        import io

        import numpy as np

        from hmlcore.model.split import as_ids

        unique = np.unique(as_ids(ids))
        buffer = io.BytesIO()
        np.save(buffer, unique, allow_pickle=False)
        data = buffer.getvalue()
        path = f"{self.rows_folder}/{_file_name(version)[: -len('.json')]}.npy"
        return {"path": path, "uri": self.lake.write_bytes(path, data), "sha256": sha256_bytes(data), "rows": len(unique)}

    def training_rows(self, record: Mapping[str, Any]) -> Any:
        """The sorted identities of the rows the version of ``record`` trained on, or None if it names none.

        Raises:
            RegistryError: the record names rows that cannot be read or whose digest changed.
        """
        import io

        import numpy as np

        named = record.get("training_rows")
        if not isinstance(named, Mapping) or not isinstance(named.get("path"), str):
            return None
        try:
            data = self.lake.read_bytes(named["path"])
        except (FileNotFoundError, OSError) as exc:
            raise RegistryError(f"the training rows of version {record.get('version')!r} cannot be read: {exc}") from None
        if named.get("sha256") and sha256_bytes(data) != named["sha256"]:
            raise RegistryError(f"the training rows of version {record.get('version')!r} changed since they were recorded")
        return np.load(io.BytesIO(data), allow_pickle=False)

    def verify(self, record: Mapping[str, Any]) -> None:
        """Check that ``record``'s version can be served: its reference's digest, then a full load of a copy
        of the container (every artifact's digest, and the signature where the container checks one).

        Raises:
            RegistryError: the reference is missing, changed since it was recorded, or its model fails to load.
        """
        version, reference = record.get("version"), record.get("reference")
        if not isinstance(reference, str):
            raise RegistryError(f"version {version!r} names no reference")
        try:
            data = self.lake.read_bytes(reference)
        except FileNotFoundError:
            raise RegistryError(f"version {version!r} fails verification: its reference {reference} does not exist") from None
        except OSError as exc:
            raise RegistryError(f"version {version!r} fails verification: {reference} cannot be read: {exc}") from exc
        expected = record.get("reference_sha256")
        if expected and sha256_bytes(data) != expected:
            raise RegistryError(
                f"version {version!r} fails verification: its reference {reference} has sha256 {sha256_bytes(data)}, "
                f"the registry recorded {expected}"
            )
        try:
            copy.copy(self.container).load(reference)
        except HmlError as exc:
            raise RegistryError(f"version {version!r} fails verification: {exc}") from exc

    def move(self, version: str, *, action: str, reason: str | None = None, verify: bool = True) -> dict[str, Any]:
        """Point ``current.json`` at ``version`` (one write) and append the move to the audit log.

        Args:
            version: a recorded version.
            action: ``publish``, ``promote`` or ``rollback``: what moved the pointer.
            reason: why, in the user's words (recorded as given).
            verify: check the version with :meth:`verify` first (the publish step skips it: it has just
                written and scored the model).

        Returns:
            The move record.

        Raises:
            RegistryError: an unknown version, or one that fails verification; the pointer is left as it was.
        """
        if action not in _ACTIONS:
            raise ConfigError(f"a pointer move is one of {', '.join(_ACTIONS)}, got {action!r}")
        record = self.get(version)
        if verify:
            self.verify(record)
        when = _now()
        move = {
            "schema": RECORD_SCHEMA,
            "action": action,
            "from": self.champion(),
            "to": version,
            "reference": record["reference"],
            "by": current_user(),
            "at": when.isoformat(timespec="seconds"),
            "reason": reason or "",
        }
        move_path = f"{self.moves_folder}/{when.strftime('%Y%m%dT%H%M%S%fZ')}-{uuid.uuid4().hex[:8]}.json"
        self.lake.write_bytes(move_path, _json(move))
        pointer = {
            "reference": record["reference"],
            "reference_sha256": record.get("reference_sha256"),
            "version": version,
            "moved_at": move["at"],
            "moved_by": move["by"],
        }
        try:
            self.lake.write_bytes(self.pointer_path, _json(pointer))
        except BaseException:
            self.lake.delete(move_path)  # the pointer did not move: neither did the log
            raise
        return move

    def promote(self, version: str, *, reason: str | None = None) -> dict[str, Any]:
        """Put ``version`` in service (verified first); return the move record.

        Raises:
            RegistryError: an unknown version, one already in service, or one that fails verification.
        """
        if version == self.champion():
            raise RegistryError(f"version {version!r} is already in service")
        return self.move(version, action="promote", reason=reason)

    def rollback(self, *, reason: str | None = None) -> dict[str, Any]:
        """Put the previous champion back in service (verified first); return the move record.

        Raises:
            RegistryError: nothing is in service, or no earlier champion is recorded.
        """
        history = self.champions()
        if not history:
            raise RegistryError(f"no version of model {self.container.name!r} is in service in {self.lake.url}: nothing to roll back")
        if len(history) < 2:
            raise RegistryError(f"version {history[-1]!r} is the first champion: there is no earlier one to roll back to")
        return self.move(history[-2], action="rollback", reason=reason)


# --------------------------------------------------------------------- the gate
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
    a copy of ``container`` and both are scored on the ``holdout`` rows the champion never trained on
    (rows whose :data:`~hmlcore.model.split.ROW_ID` is not among the training rows its record names),
    and the challenger is promoted only if its gain passes the rule. When no such row is left the gate
    refuses and says what to do. ``force`` promotes in every case; a champion that can no longer be
    loaded or scored (other features, a broken artifact) is replaced, and the reason says so.
    """
    from hmlcore.model.assessment import compare

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
        rows, excluded = _unseen_by(registry, champion_record, holdout)
        if rows is not None and len(rows) == 0:
            if force:
                return made("champion", f"version {version} promoted: forced (no validation row is unseen by the champion {champion})")
            split = (champion_record.get("split") or {}) if champion_record else {}
            shown = ", ".join(f"{k} {split[k]}" for k in ("seed", "validation_share", "key", "time") if split.get(k) is not None)
            return made(
                "rejected",
                f"version {version} not promoted: the champion {champion} trained on all {excluded} validation rows of this run, "
                f"so they cannot be compared fairly; train with the champion's split ({shown or 'see models show'}) "
                "and data, or pass --param force=true",
            )
        compared = compare(container, incumbent, rows if rows is not None else holdout, rule)
    except (HmlError, KeyError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return made("champion", f"version {version} promoted: the champion {champion} cannot be scored on these rows ({detail})")
    if compared["gain"] is None:
        if force:
            return made("champion", f"version {version} promoted: forced ({rule.metric} cannot be compared on these rows)")
        return made(
            "rejected",
            f"version {version} not promoted: {rule.metric} is not defined on the {compared['rows']} validation rows neither "
            f"it nor the champion {champion} trained on; train with a larger validation_share or the champion's split, "
            "or pass --param force=true",
        )
    scores.update({key: compared[key] for key in ("challenger", "champion", "gain", "interval", "rows")})
    interval = compared["interval"]
    gain = f"a gain of {compared['gain']:+.4g}" + (f" (95% interval {interval[0]:+.4g} to {interval[1]:+.4g})" if interval else "")
    shown = (
        f"{rule.metric} {compared['challenger']:.4g} vs {compared['champion']:.4g} for the champion {champion} "
        f"on the {compared['rows']} validation rows neither trained on, {gain}"
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


def _unseen_by(registry: ModelRegistry, record: Mapping[str, Any], holdout: pd.DataFrame | None) -> tuple[pd.DataFrame | None, int]:
    """The ``holdout`` rows the champion of ``record`` never trained on (None when either side does not name
    its rows: then every row is compared), and how many rows were there."""
    from hmlcore.model.split import ROW_ID, as_ids

    if holdout is None or ROW_ID not in holdout.columns:
        return None, 0 if holdout is None else len(holdout)
    trained = registry.training_rows(record) if record else None
    if trained is None:
        return None, len(holdout)
    import numpy as np

    seen = np.isin(as_ids(holdout[ROW_ID].to_numpy()), trained)
    return holdout.loc[~seen], len(holdout)


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
    from hmlcore.model.assessment import assess

    if holdout is None:
        raise ConfigError("a promotion rule compares models on held-out rows: pass holdout= (e.g. the validation split)")
    return assess(container, holdout, resamples=0)


def lineage(
    container: ModelContainer, reference: Mapping[str, Any], uri: str, data: bytes, given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The version record of a just-published reference, before the gate's decision is added."""
    given = dict(given or {})
    unknown = sorted(set(given) - {"parameters", "data", "split", "evaluation", "image", "notes"})
    if unknown:
        raise ConfigError(f"lineage has unknown key(s) {', '.join(unknown)}: use parameters, data, split, evaluation, image, notes")
    app = container.app
    return {
        "schema": RECORD_SCHEMA,
        "version": reference["version"],
        "name": container.name,
        "project": container.project_name,
        "reference": uri,
        "reference_sha256": sha256_bytes(data),
        "run_id": reference.get("run_id"),
        "git_commit": reference.get("git_commit"),
        "image": given.get("image") or _env.IMAGE.get() or (app.image_url if app is not None else None),
        "parameters": dict(given.get("parameters") or {}),
        "data": dict(given.get("data") or {}),
        "split": dict(given.get("split") or {}),
        "evaluation": dict(given.get("evaluation") or {}),
        "model_sha256": ((reference.get("artifacts") or {}).get("model") or {}).get("sha256"),
        "hmlcore_version": reference.get("hmlcore_version"),
        "notes": given.get("notes"),
        "metrics": dict(reference.get("metrics") or {}),
        "kind": reference.get("kind") or container.kind,
        "classes": reference.get("classes"),
        "created_by": current_user(),
        "created_at": _now().isoformat(timespec="microseconds"),
    }


def decision_dict(decision: Decision) -> dict[str, Any]:
    """The decision as the version record keeps it."""
    out = asdict(decision)
    out.pop("version")
    return out


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()
