"""The model registry, kept in the lake itself: published versions, the champion pointer and its audit log.

No server and no database: three kinds of objects under the model's folder, each written whole and
atomically, so the registry works the same on a local folder, ``gs://`` and ``s3://``::

    models/<project>/<name>/current.json                        the pointer: the version in service
    models/<project>/<name>/registry/versions/<version>.json    one record per published version, written once
    models/<project>/<name>/registry/moves/<time>-<id>.json     one record per pointer move, written once

A version record holds the lineage (run id, git commit, image, pipeline parameters, data source and
digest, metrics, model kind, who and when) and the gate's decision (champion, challenger or rejected,
with both scores). A move record says who moved the pointer, when, from which version to which and
why. Nothing is ever rewritten except the pointer, and that is one put; readers list a folder and read
whole objects, so no reader sees a half-written record and no two writers edit the same object (two
people promoting at the same moment both get their move logged; the later pointer write wins).

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
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

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
    """Who is acting: ``$HML_USER``, else ``$USER``, else the login name, else ``unknown``."""
    for name in ("HML_USER", "USER"):
        if os.environ.get(name):
            return os.environ[name]
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
        status: ``champion`` (promoted), ``challenger`` (published without a promotion) or ``rejected``.
        reason: one line saying why, fit to print.
        champion: the version in service before (None for a first model).
        scores: the rule's metric for ``challenger`` and ``champion`` on the same held-out rows.
        rule: the rule applied (None when no rule was).
        forced: whether the promotion was forced.
    """

    version: str
    status: str
    reason: str
    champion: str | None = None
    scores: dict[str, float | None] = field(default_factory=dict)
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
    challenger_scores: Mapping[str, float] | None,
    holdout: pd.DataFrame | None,
    force: bool = False,
    promote: bool = True,
) -> Decision:
    """Decide whether the newly published ``version`` of ``container`` replaces the champion.

    The champion (the version in service) is loaded into a copy of ``container`` and scored on the same
    ``holdout`` rows the challenger was scored on. A first model is always promoted; ``force`` promotes
    anyway; a champion that can no longer be loaded or scored (other features, a broken artifact) is
    replaced, and the reason says so.
    """
    registry = ModelRegistry(container)
    champion = registry.champion()
    rule_dict = rule.to_dict() if rule else None
    new = float(challenger_scores[rule.metric]) if rule and challenger_scores else None
    scores: dict[str, float | None] = {"challenger": new, "champion": None}

    def made(status: str, reason: str) -> Decision:
        return Decision(version, status, reason, champion, scores, rule_dict, force)

    if not promote:
        return made("challenger", f"version {version} published as a challenger; {champion or 'no version'} stays in service")
    if champion is None:
        return made("champion", f"version {version} promoted: it is the first model")
    if rule is None or new is None:
        return made("champion", f"version {version} promoted over {champion}: {'forced' if force else 'no promotion rule'}")
    try:
        incumbent = copy.copy(container).load(registry.get(champion)["reference"] if _recorded(registry, champion) else None)
        old = float(score(incumbent, holdout)[rule.metric])
    except (HmlError, KeyError, ValueError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return made("champion", f"version {version} promoted: the champion {champion} cannot be scored on these rows ({detail})")
    scores["champion"] = old
    shown = f"{rule.metric} {new:.6g} vs {old:.6g} for the champion {champion}"
    if force:
        return made("champion", f"version {version} promoted: {shown}: forced")
    if rule.passes(new=new, old=old):
        return made("champion", f"version {version} promoted: {shown} (rule: {rule.describe()})")
    gain = rule.gain(new=new, old=old)
    return made("rejected", f"version {version} not promoted: {shown}, a gain of {gain:+.6g} < {rule.min_gain:g} (rule: {rule.describe()})")


def _recorded(registry: ModelRegistry, version: str) -> bool:
    try:
        registry.get(version)
    except RegistryError:
        return False
    return True


def score(container: ModelContainer, holdout: pd.DataFrame | None) -> dict[str, float]:
    """The evaluation metrics of ``container`` on ``holdout``.

    Raises:
        ConfigError: no held-out rows were given.
    """
    if holdout is None:
        raise ConfigError("a promotion rule compares models on held-out rows: pass holdout= (e.g. the validation split)")
    return container.evaluate(holdout)


def lineage(
    container: ModelContainer, reference: Mapping[str, Any], uri: str, data: bytes, given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The version record of a just-published reference, before the gate's decision is added."""
    given = dict(given or {})
    unknown = sorted(set(given) - {"parameters", "data", "image", "notes"})
    if unknown:
        raise ConfigError(f"lineage has unknown key(s) {', '.join(unknown)}: use parameters, data, image, notes")
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
        "image": given.get("image") or os.environ.get("HML_IMAGE") or (app.image_url if app is not None else None),
        "parameters": dict(given.get("parameters") or {}),
        "data": dict(given.get("data") or {}),
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
