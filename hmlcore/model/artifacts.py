"""A model's files in the lake: written in formats that cannot run code when read, named by a reference JSON
with their sha256 (signed when a key is configured), and read back only after every trust check.

As MLflow's flavours do, functions hold the format and the container holds the model:

- :func:`save` writes the model (XGBoost's own format or skops: see :mod:`hmlcore.model.model_io`), its
  metadata and distributions, then the reference that names each with its digest, signed with
  :mod:`hmlcore.model.signing` when a key is configured; it returns a :class:`Saved`;
- :func:`load` follows a reference (or the model's pointer) and returns a :class:`Loaded` after refusing a
  pointer, reference or artifact outside the lake, an unsigned or wrongly signed reference while a key is
  configured, an artifact whose digest differs, and a model of other features or another kind;
- :func:`model_bytes` and :func:`model_from_bytes` hand the bound model from one pipeline step to the next;
  :func:`metadata` and :func:`read_analysis` the learnt encoder, distributions and target.

Example:
    >>> saved = save(container, run_id="run-1", git_commit="abc123")  # doctest: +SKIP
    >>> load(container, saved.uri).reference["version"]  # doctest: +SKIP
    'run-1'
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore._lazy import lazy_module
from hmlcore._version import __version__
from hmlcore.errors import ModelKindError, ModelLoadError, UntrustedModelError
from hmlcore.model._estimators import check_model
from hmlcore.model.encoding import FeatureEncoder
from hmlcore.model.model_io import dump_model, load_model
from hmlcore.model.signing import sign, signing_key, verify
from hmlcore.model.target import Target
from hmlcore.storage.lake import sha256_bytes

if TYPE_CHECKING:
    import numpy as np

    from hmlcore.model.container import ModelContainer
else:
    np = lazy_module("numpy")

__all__ = ["Loaded", "Saved", "load", "metadata", "model_bytes", "model_from_bytes", "read_analysis", "save"]

#: the version of the reference JSON's layout
REFERENCE_SCHEMA = 1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
#: the first bytes of :func:`model_bytes`' output, before the format's name
MODEL_HEADER = b"hml-model:"
#: the model file's extension by format
EXTENSIONS = {"xgboost": "ubj", "skops": "skops", "joblib": "joblib"}


@dataclass(frozen=True)
class Saved:
    """What :func:`save` wrote: the reference, its URI in the lake and its bytes (the registry records their digest)."""

    reference: dict[str, Any]
    uri: str
    data: bytes


@dataclass(frozen=True)
class Loaded:
    """A verified model and what was saved with it, for :meth:`~hmlcore.model.container.ModelContainer.load` to take."""

    reference: dict[str, Any]
    uri: str
    model: Any
    encoder: FeatureEncoder
    distributions: dict[str, Any]
    target: Target
    metrics: dict[str, float]


# ----------------------------------------------------------------- between pipeline steps
def model_bytes(container: ModelContainer) -> bytes:
    """The bound model as bytes: a header line naming the format, then the model in that format (see
    :func:`hmlcore.model.model_io.dump_model`): never a pickle unless ``HML_ALLOW_PICKLE`` allows it.

    Raises:
        ModelLoadError: no model is bound.
    """
    if container.model is None:
        raise ModelLoadError(f"model {container.name!r} has nothing to serialize: call bind_model() first")
    data, fmt = dump_model(container.model)
    return MODEL_HEADER + fmt.encode() + b"\n" + data


def model_from_bytes(container: ModelContainer, data: bytes) -> Any:
    """The model that :func:`model_bytes` wrote (not yet bound).

    Raises:
        UntrustedModelError: the bytes are a pickle (or have no header) and ``HML_ALLOW_PICKLE`` is not set.
        ModelLoadError: the bytes are not a model :func:`model_bytes` wrote.
    """
    fmt, body = "joblib", data  # written before the header existed: a joblib pickle
    if data.startswith(MODEL_HEADER):
        line, _, body = data[len(MODEL_HEADER) :].partition(b"\n")
        fmt = line.decode("ascii", errors="replace")
    return load_model(body, fmt, source=f"the serialized model {container.name!r}")


def metadata(container: ModelContainer, *, with_distributions: bool = True) -> dict[str, Any]:
    """The learnt encoder (with its column order), the defaults, the target and, if asked, the distributions."""
    out = {
        "encoder": container.encoder.to_dict(),
        "columns": container.encoder.columns,
        "defaults": container.defaults,
        "target": container.target,
        "kind": container.kind,
        "target_info": container.target_info.to_dict(),
    }
    if with_distributions:
        out["distributions"] = container.distributions
    return out


def read_analysis(container: ModelContainer, data: bytes) -> tuple[FeatureEncoder, dict[str, Any], Target]:
    """The encoder, distributions and target that ``json.dumps(metadata(...))`` wrote, checked against ``container``.

    Raises:
        ModelLoadError: ``data`` is not an analysis of this container's features and target.
        ModelKindError: it is of another kind.
    """
    try:
        saved = json.loads(data)
        encoder = FeatureEncoder.from_dict(saved["encoder"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"the feature analysis is malformed: {exc}") from exc
    if encoder.features != container.features:
        raise ModelLoadError(f"the feature analysis covers {encoder.features}, but this container declares {container.features}")
    return encoder, saved.get("distributions", {}), saved_target(container, saved, "the feature analysis")


def saved_target(container: ModelContainer, saved: Mapping[str, Any], source: str, model: Any = None) -> Target:
    """The target saved in ``saved`` metadata, checked against the container's kind and target.

    Raises:
        ModelKindError: a model of another kind.
        ModelLoadError: a malformed target, or another target column.
    """
    kind = saved.get("kind", "binary")  # published before the kind was saved: binary was the only kind
    if kind != container.kind:
        raise ModelKindError(f"{source}: a {kind} model, but the container {container.name!r} is of kind {container.kind!r}")
    recorded = saved.get("target_info") or {"name": saved.get("target", container.target), "kind": kind}
    try:
        target = Target.from_dict(recorded)
    except ValueError as exc:
        raise ModelLoadError(f"{source} has a malformed target: {exc}") from exc
    if target.name != container.target:
        raise ModelLoadError(f"{source} predicts {target.name!r}, but the container's target is {container.target!r}")
    if target.is_classifier and not target.classes and model is not None and getattr(model, "classes_", None) is not None:
        target.classes = [c.item() if isinstance(c, np.generic) else c for c in np.asarray(model.classes_).tolist()]
    return target


# ----------------------------------------------------------------- saving
def save(container: ModelContainer, *, run_id: str, git_commit: str) -> Saved:
    """Write the container's model, metadata and distributions under ``models/<project>/<commit>/<run-id>/``,
    then the reference naming them (signed with a key configured); if a write fails, the artifacts already
    written are removed again, so a reference never names a missing file.

    Raises:
        UntrustedModelError: no safe format can hold the model and ``HML_ALLOW_PICKLE`` is not set.
        ConfigError: the signing key is invalid, or the lake cannot be written.
    """
    lake = container.lake
    folder = f"models/{_safe(container.project_name)}/{_safe(git_commit)}/{_safe(run_id)}"
    key = signing_key()
    data, model_format = dump_model(container.model)
    payloads = {
        "model": (f"{folder}/{container.name}.{EXTENSIONS[model_format.split(':')[0]]}", data),
        "metadata": (f"{folder}/{container.name}.metadata.json", _json(metadata(container, with_distributions=False))),
        "distributions": (f"{folder}/{container.name}.distributions.json", _json(container.distributions)),
    }
    artifacts: dict[str, dict[str, Any]] = {}
    written: list[str] = []
    try:
        for name, (path, payload) in payloads.items():
            uri = lake.write_bytes(path, payload)
            written.append(path)
            artifacts[name] = {"uri": uri, "path": path, "sha256": sha256_bytes(payload), "size": len(payload)}
        artifacts["model"]["format"] = model_format
        reference = {
            "schema": REFERENCE_SCHEMA,
            "name": container.name,
            "project": container.project_name,
            "version": run_id,
            "run_id": run_id,
            "git_commit": git_commit,
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "hmlcore_version": __version__,
            "target": container.target,
            "kind": container.kind,
            "classes": container.classes,
            "features_numeric": container.features_numeric,
            "features_categorical": container.features_categorical,
            "columns": container.encoder.columns,
            "metrics": container.metrics,
            "artifacts": artifacts,
        }
        if key is not None:
            reference = sign(reference, key)
        reference_bytes = _json(reference)
        uri = lake.write_bytes(f"{folder}/{container.name}.reference.json", reference_bytes)
    except BaseException:
        for path in written:
            lake.delete(path)
        raise
    return Saved(reference, uri, reference_bytes)


# ----------------------------------------------------------------- loading
def load(container: ModelContainer, reference: str | None = None) -> Loaded:
    """The model named by ``reference`` (default ``$HML_MODEL_REFERENCE``, else the model's pointer), verified.

    In this order, each step before anything later is read: the pointer and the reference must lie in the
    lake; with a signing key configured the reference's signature must match; every artifact must lie in
    the lake and its sha256 must match the reference; then the model file is parsed in its recorded format
    (a pickle only with ``HML_ALLOW_PICKLE``, see :mod:`hmlcore.model.model_io`).

    Raises:
        UntrustedModelError: the pointer, the reference or an artifact lies outside the lake; the reference
            is unsigned or wrongly signed while a key is configured; or the model is a pickle and pickles
            are not allowed.
        ModelLoadError: the reference is missing or malformed, an artifact is missing, an artifact's digest
            differs from the reference (the message names the file and both digests), or the model was
            trained on other features than the container declares.
    """
    key = signing_key()
    uri = reference or _env.MODEL_REFERENCE.get() or _current_reference(container)
    ref = _read_json(container, _in_lake(container, uri, "reference"), "reference")
    if key is not None:
        verify(ref, key, source=uri)
    entries = _artifact_entries(ref, uri)
    for artifact_uri, _ in entries.values():
        _in_lake(container, artifact_uri, f"artifact of {uri}")
    blobs = {name: _verified(container, artifact_uri, expected, uri) for name, (artifact_uri, expected) in entries.items()}
    try:
        saved = json.loads(blobs["metadata"])
        encoder = FeatureEncoder.from_dict(saved["encoder"])
        distributions = json.loads(blobs["distributions"]) if "distributions" in blobs else saved.get("distributions", {})
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"metadata of {uri} is malformed: {type(exc).__name__}: {exc}") from exc
    if encoder.features != container.features:
        raise ModelLoadError(f"model {uri} was trained on features {encoder.features}, but this container declares {container.features}")
    if saved.get("kind", "binary") != container.kind:  # before unpickling anything
        saved_target(container, saved, f"model {uri}")
    model = load_model(blobs["model"], _model_format(ref), source=f"model file {entries['model'][0]}")
    target = saved_target(container, saved, f"model {uri}", model)
    check_model(model, name=container.name, kind=container.kind, classes=target.classes, columns=len(encoder.columns))
    return Loaded(ref, uri, model, encoder, distributions, target, dict(ref.get("metrics") or {}))


def _verified(container: ModelContainer, artifact_uri: str, expected: str, reference_uri: str) -> bytes:
    try:
        data = container.lake.read_bytes(artifact_uri)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"artifact {artifact_uri} named by {reference_uri} does not exist") from exc
    except OSError as exc:
        raise ModelLoadError(f"artifact {artifact_uri} named by {reference_uri} cannot be read: {exc}") from exc
    actual = sha256_bytes(data)
    if actual != expected:
        raise ModelLoadError(
            f"artifact {artifact_uri} fails verification: its sha256 is {actual}, the reference {reference_uri} expects {expected}"
        )
    return data


def _current_reference(container: ModelContainer) -> str:
    lake, pointer_path = container.lake, container.current_path
    if not lake.exists(pointer_path):
        raise ModelLoadError(
            f"no published model {container.name!r} in {lake.url}: run the training pipeline first or set HML_MODEL_REFERENCE"
        )
    pointer = _read_json(container, pointer_path, "pointer")
    if not isinstance(pointer.get("reference"), str):
        raise ModelLoadError(f"{lake.uri(pointer_path)} is malformed: no 'reference'")
    return _in_lake(container, str(pointer["reference"]), f"reference named by {lake.uri(pointer_path)}")


def _in_lake(container: ModelContainer, uri: str, what: str) -> str:
    """``uri`` if it lies in the lake; refused before anything is read from it otherwise."""
    if not container.lake.contains(uri):
        raise UntrustedModelError(f"the {what} {uri} lies outside the lake {container.lake.url}: it was not read")
    return uri


def _read_json(container: ModelContainer, uri: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(container.lake.read_bytes(uri))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"model {what} {uri} does not exist") from exc
    except OSError as exc:
        raise ModelLoadError(f"model {what} {uri} cannot be read: {exc}") from exc
    except ValueError as exc:
        raise ModelLoadError(f"model {what} {uri} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"model {what} {uri} is not a JSON object")
    return data


def _artifact_entries(ref: dict[str, Any], uri: str) -> dict[str, tuple[str, str]]:
    """``{key: (artifact uri, sha256)}`` of a reference, checked for shape; ``model`` and ``metadata`` are required."""
    artifacts = ref.get("artifacts")
    if not isinstance(artifacts, dict):
        raise ModelLoadError(f"reference {uri} is malformed: 'artifacts' must be an object, got {type(artifacts).__name__}")
    entries: dict[str, tuple[str, str]] = {}
    for key in ("model", "metadata", "distributions"):
        entry = artifacts.get(key)
        if entry is None and key == "distributions":
            continue
        if not isinstance(entry, dict):
            raise ModelLoadError(f"reference {uri} is malformed: no artifacts.{key}")
        artifact_uri, digest = entry.get("uri"), entry.get("sha256")
        if not isinstance(artifact_uri, str) or not artifact_uri:
            raise ModelLoadError(f"reference {uri} is malformed: artifacts.{key}.uri is {artifact_uri!r}")
        if not isinstance(digest, str) or not _SHA256_RE.match(digest):
            raise ModelLoadError(f"reference {uri} is malformed: artifacts.{key}.sha256 is {digest!r}, not a hex sha256")
        entries[key] = (artifact_uri, digest)
    return entries


def _model_format(ref: dict[str, Any]) -> str:
    """The model file's format recorded in a reference; references written before formats were recorded hold a pickle."""
    fmt = ref["artifacts"]["model"].get("format", "joblib")
    return fmt if isinstance(fmt, str) else repr(fmt)


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", str(text))[:80] or "x"
