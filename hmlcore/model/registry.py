"""The model registry, kept in the lake itself: published versions, the champion pointer and its audit log.

No server and no database: four kinds of objects under the model's folder, each written whole and
atomically, so the registry works the same on a local folder, ``gs://`` and ``s3://``::

    models/<project>/<name>/current.json                        the pointer: the version in service
    models/<project>/<name>/registry/versions/<version>.json    one record per published version, written once
    models/<project>/<name>/registry/moves/<time>-<id>.json     one record per pointer move, written once
    models/<project>/<name>/registry/training-rows/<version>.npy the identities of the rows a version trained on
    models/<project>/<name>/registry/training-rows/<version>.values.npy   and the hashes of their feature values

A version record holds the lineage (run id, git commit, image, pipeline parameters, data source and
digest, the split, metrics with their baseline and intervals, model kind, who and when) and the gate's
decision (champion, challenger, unchanged or rejected, with the scores and the gain's interval: see
:mod:`hmlcore.model.gate`, which reads this registry). A move record says who moved the pointer, when,
from which version to which and why. Nothing is ever rewritten except the pointer, and that is one put;
readers list a folder and read whole objects, so no reader sees a half-written record and no two writers
edit the same object (two people promoting at the same moment both get their move logged; the later
pointer write wins).

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
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore.errors import ConfigError, HmlError, RegistryError
from hmlcore.model.split import ROW_ID, as_ids, values_ids
from hmlcore.storage.lake import sha256_bytes

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer

__all__ = ["LINEAGE_KEYS", "ModelRegistry", "check_lineage", "current_user", "lineage"]

#: the version of the records' layout
RECORD_SCHEMA = 1
#: what a publisher may add to a version's record besides the reference (see :func:`lineage`)
LINEAGE_KEYS = ("parameters", "data", "split", "evaluation", "image", "notes")
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

    def record_training_rows(self, version: str, rows: Any, *, features: list[str] | None = None) -> dict[str, Any]:
        """Keep what ``version`` trained on; return what its record names (``uri``, ``sha256``, ``rows``, ``values``).

        Args:
            version: the version.
            rows: the training rows: a frame holding :data:`~hmlcore.model.split.ROW_ID` and the ``features``,
                or only their identities (a version published so names no values, and the gate can then
                leave out only those rows, not copies of them).
            features: the model's features, whose values are hashed (:func:`~hmlcore.model.split.values_ids`).

        Two sorted ``.npy`` objects: the rows' identities (see :mod:`hmlcore.model.split`), and, from a
        frame, the hashes of their feature values (``values``, with the ``columns`` hashed), by which the
        gate knows a copy of a training row when it sees one.

        Raises:
            ConfigError: the frame lacks the identity column or a feature.
        """
        import pandas as pd

        stem = f"{self.rows_folder}/{_file_name(version)[: -len('.json')]}"
        if not isinstance(rows, pd.DataFrame):
            return self._write_ids(f"{stem}.npy", as_ids(rows))
        if ROW_ID not in rows.columns:
            raise ConfigError(f"the training rows lack their identity column {ROW_ID!r} (see hmlcore.model.split.row_ids)")
        columns = list(features or [])
        written = self._write_ids(f"{stem}.npy", as_ids(rows[ROW_ID].to_numpy()))
        written["values"] = {**self._write_ids(f"{stem}.values.npy", values_ids(rows, columns)), "columns": columns}
        return written

    def _write_ids(self, path: str, ids: Any) -> dict[str, Any]:
        import io

        import numpy as np

        unique = np.unique(ids)
        buffer = io.BytesIO()
        np.save(buffer, unique, allow_pickle=False)
        data = buffer.getvalue()
        return {"path": path, "uri": self.lake.write_bytes(path, data), "sha256": sha256_bytes(data), "rows": len(unique)}

    def training_rows(self, record: Mapping[str, Any]) -> Any:
        """The sorted identities of the rows the version of ``record`` trained on, or None if it names none.

        Raises:
            RegistryError: the record names rows that cannot be read or whose digest changed.
        """
        named = record.get("training_rows")
        return self._read_ids(named, record) if isinstance(named, Mapping) else None

    def training_values(self, record: Mapping[str, Any]) -> tuple[Any, list[str]] | None:
        """The sorted hashes of the feature values the version of ``record`` trained on and the columns hashed,
        or None if it names none (a version published before they were recorded).

        Raises:
            RegistryError: the record names values that cannot be read or whose digest changed.
        """
        named = (record.get("training_rows") or {}).get("values")
        if not isinstance(named, Mapping) or not isinstance(named.get("columns"), list):
            return None
        hashes = self._read_ids(named, record)
        return None if hashes is None else (hashes, [str(c) for c in named["columns"]])

    def _read_ids(self, named: Mapping[str, Any], record: Mapping[str, Any]) -> Any:
        import io

        import numpy as np

        if not isinstance(named.get("path"), str):
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


def check_lineage(given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``given`` as a dict, checked to hold only :data:`LINEAGE_KEYS` (before anything is written).

    Raises:
        ConfigError: an unknown key.
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(LINEAGE_KEYS))
    if unknown:
        raise ConfigError(f"lineage has unknown key(s) {', '.join(unknown)}: use {', '.join(LINEAGE_KEYS)}")
    return given


def lineage(
    container: ModelContainer, reference: Mapping[str, Any], uri: str, data: bytes, given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The version record of a just-published reference, before the gate's decision is added.

    Raises:
        ConfigError: ``given`` has an unknown key (see :func:`check_lineage`).
    """
    given = check_lineage(given)
    return {
        "schema": RECORD_SCHEMA,
        "version": reference["version"],
        "name": container.name,
        "project": container.project_name,
        "reference": uri,
        "reference_sha256": sha256_bytes(data),
        "run_id": reference.get("run_id"),
        "git_commit": reference.get("git_commit"),
        "image": given.get("image") or _env.IMAGE.get() or container.image,
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


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()
