"""The ModelContainer: a model together with everything needed to use it again.

A container knows its features (numeric and categorical), its target, the distributions seen in
training, the encoder, and the trained model. :meth:`ModelContainer.publish` writes the model (joblib)
and its metadata to the lake, then a *reference* JSON that names every artifact with its sha256;
:meth:`ModelContainer.load` reads a reference back and verifies each artifact before unpickling it.

Example:
    >>> container = ModelContainer("crashed", "car-crashes", ["age"], ["sex"], "dead")
    >>> container.features
    ['age', 'sex']
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hmlcore import __version__
from hmlcore.distributions import HISTOGRAM_BINS, QUANTILES, describe_distributions
from hmlcore.encoding import FeatureEncoder
from hmlcore.errors import ConfigError, FeatureError, ModelLoadError
from hmlcore.lake import Lake, sha256_bytes
from hmlcore.promotion import PromotionRule
from hmlcore.registry import Decision, ModelRegistry, decide, decision_dict, score
from hmlcore.registry import lineage as registry_lineage

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.app import HmlApp

__all__ = ["HISTOGRAM_BINS", "QUANTILES", "ModelContainer", "describe_distributions"]

#: the version of the reference JSON's layout
REFERENCE_SCHEMA = 1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: the version of the reference JSON's layout
REFERENCE_SCHEMA = 1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


class ModelContainer:
    """A model, its features and its training metadata.

    Args:
        name: the model's name (letters, digits, ``_.-``), used in artifact paths.
        project_name: the project the model belongs to.
        features_numeric: numeric feature names.
        features_categorical: categorical feature names.
        target: the column the model predicts.
        unknown_category: the policy for a category unseen in training: ``"error"`` (default, names the
            feature and the value), ``"ignore"`` (all zeros) or ``"other"`` (an ``<feature>=__other__`` column).
        missing_category: the policy for a missing categorical value: ``"ignore"`` (default, all zeros),
            ``"error"`` or ``"other"``. A missing numeric value is always NaN. See :mod:`hmlcore.encoding`.
        defaults: values used for features a request leaves out (none by default: a missing feature is an error).
        lake: where to publish; defaults to the lake of the app the container is registered with.

    Example:
        >>> c = ModelContainer("m", "p", ["x"], [], "y")
        >>> c.bind_model(object()).model is not None
        True
    """

    def __init__(
        self,
        name: str,
        project_name: str,
        features_numeric: Sequence[str],
        features_categorical: Sequence[str],
        target: str,
        *,
        unknown_category: str = "error",
        missing_category: str = "ignore",
        defaults: Mapping[str, Any] | None = None,
        lake: Lake | str | None = None,
    ) -> None:
        for label, value in (("name", name), ("project_name", project_name)):
            if not isinstance(value, str) or not _NAME_RE.match(value):
                raise ConfigError(f"model {label} {value!r} must be 1-63 letters, digits, '_', '.' or '-'")
        if isinstance(features_numeric, str) or isinstance(features_categorical, str):
            raise ConfigError("features must be lists of names, not a single string")
        if target in set(features_numeric) | set(features_categorical):
            raise ConfigError(f"target {target!r} is also declared as a feature")
        self.name = name
        self.project_name = project_name
        self.features_numeric = list(features_numeric)
        self.features_categorical = list(features_categorical)
        self.target = target
        self.defaults = dict(defaults or {})
        unknown_features = sorted(set(self.defaults) - set(self.features))
        if unknown_features:
            raise ConfigError(f"defaults name unknown features: {', '.join(unknown_features)}")
        try:
            self.encoder = FeatureEncoder(
                self.features_numeric, self.features_categorical, unknown=unknown_category, missing=missing_category
            )
        except ValueError as exc:
            raise ConfigError(f"model {name!r}: {exc}") from None
        self.distributions: dict[str, Any] = {}
        self.metrics: dict[str, float] = {}
        self.model: Any = None
        self.reference: dict[str, Any] | None = None
        self.reference_uri: str | None = None
        #: what the registry decided when this container last published (see :meth:`publish`)
        self.decision: Decision | None = None
        self.app: HmlApp | None = None
        self._lake = Lake(lake) if isinstance(lake, str) else lake

    def __repr__(self) -> str:
        version = self.version or "unpublished"
        return f"ModelContainer({self.name!r}, version={version!r})"

    @property
    def features(self) -> list[str]:
        """Every feature, numeric first."""
        return self.features_numeric + self.features_categorical

    @property
    def version(self) -> str | None:
        """The published version (the pipeline run id), if any."""
        return self.reference.get("version") if self.reference else None

    @property
    def lake(self) -> Lake:
        """The lake the container publishes to and loads from."""
        if self._lake is None:
            if self.app is None:
                raise ConfigError(f"model {self.name!r} has no lake: pass lake= or register it with app.register_model")
            self._lake = self.app.lake
        return self._lake

    # ----------------------------------------------------------------- training
    def analyze_distributions(self, df: pd.DataFrame) -> ModelContainer:
        """Learn the categories and summarise every feature of the training frame ``df``.

        Raises:
            FeatureError: ``df`` lacks a declared feature or is empty.
        """
        self._check_frame(df, need_target=False)
        self.encoder.fit(df)
        self.distributions = describe_distributions(df, self.features_numeric, self.features_categorical)
        return self

    def build_training_matrix(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(X, y)`` for ``df``: the encoded features and the target as integers.

        Learns the categories first if :meth:`analyze_distributions` has not run.

        Raises:
            FeatureError: a feature or the target is missing, or the target has fewer than two classes.
        """
        self._check_frame(df, need_target=True)
        if not self.encoder.categories and self.features_categorical:
            self.analyze_distributions(df)
        y = df[self.target].to_numpy()
        absent = _isnull(y)
        if absent.any():
            raise FeatureError(
                f"target {self.target!r} is missing in {int(absent.sum())} of {len(y)} rows (first: row {int(np.argmax(absent))})",
                [{"feature": self.target, "message": "missing target"}],
            )
        classes = np.unique(y)
        if len(classes) < 2:
            raise FeatureError(f"target {self.target!r} has {len(classes)} class(es) {classes.tolist()}: a model needs at least two")
        return self.encoder.transform(df), y.astype(np.int64) if y.dtype.kind in "biu" else y

    def _check_frame(self, df: pd.DataFrame, *, need_target: bool) -> None:
        needed = self.features + ([self.target] if need_target else [])
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise FeatureError(f"the data lacks column(s): {', '.join(missing)}", [{"feature": c, "message": "missing"} for c in missing])
        if len(df) == 0:
            raise FeatureError("the data has no rows")

    def bind_model(self, model: Any) -> ModelContainer:
        """Attach the trained model (anything joblib can save that has ``predict_proba``)."""
        self.model = model
        return self

    def serialize_model(self) -> bytes:
        """The bound model as bytes, to hand from one pipeline step to the next (see :meth:`deserialize_model`)."""
        import joblib

        if self.model is None:
            raise ModelLoadError(f"model {self.name!r} has nothing to serialize: call bind_model() first")
        buffer = io.BytesIO()
        joblib.dump(self.model, buffer)
        return buffer.getvalue()

    def deserialize_model(self, data: bytes) -> ModelContainer:
        """Bind the model that :meth:`serialize_model` wrote."""
        import joblib

        return self.bind_model(joblib.load(io.BytesIO(data)))

    # ----------------------------------------------------------------- predicting
    def encode(self, data: Any) -> np.ndarray:
        """Encode a DataFrame, a list of records or one record; records may leave out features with declared defaults."""
        return self.encoder.transform(data, defaults=self.defaults)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """The probability of the positive class for each row of an encoded matrix."""
        if self.model is None:
            raise ModelLoadError(f"model {self.name!r} is not loaded: call load() or bind_model() first")
        booster = getattr(self.model, "_hml_booster", None)
        if booster is not None:
            return np.asarray(booster.inplace_predict(features), dtype=np.float64)
        proba = self.model.predict_proba(features)
        return np.asarray(proba)[:, 1] if np.ndim(proba) == 2 else np.asarray(proba)

    # ----------------------------------------------------------------- publishing
    def publish(
        self,
        *,
        run_id: str | None = None,
        git_commit: str | None = None,
        metrics: Mapping[str, float] | None = None,
        promote: bool | Mapping[str, Any] | PromotionRule = True,
        holdout: pd.DataFrame | None = None,
        force: bool = False,
        lineage: Mapping[str, Any] | None = None,
    ) -> str:
        """Write the model and its metadata to the lake, then the reference JSON; return the reference URL.

        Artifacts (``<name>.joblib``, ``<name>.metadata.json`` with the encoder and its column order,
        ``<name>.distributions.json``) go under ``models/<project>/<commit>/<run-id>/``, each written
        atomically. The reference (artifact URIs, sha256, sizes, created-at, git commit, run id, hmlcore
        version, metrics) is written last, so a reference never names an artifact that is not fully
        written; if any write fails, the artifacts already written are removed again.
        The version is recorded in the model registry (:mod:`hmlcore.registry`) with its lineage, and
        ``models/<project>/<name>/current.json`` points at it if it is promoted: always with
        ``promote=True``; never with ``promote=False`` (a challenger); with a promotion rule (a
        :class:`~hmlcore.promotion.PromotionRule` or the dict ``shared.PROMOTION`` declares), only if
        the new model beats the version in service on the rule's metric, both scored on ``holdout``.
        :attr:`decision` says what happened and why.

        Args:
            run_id: the pipeline run id (default ``$HML_RUN_ID``, else a fresh ``local-...`` id).
            git_commit: the commit of the code (default ``$HML_GIT_COMMIT``, else ``git rev-parse``, else
                ``"unversioned"``).
            metrics: evaluation metrics to record (numbers).
            promote: ``True``, ``False`` or a promotion rule (see above).
            holdout: the held-out rows (features and target) both models are scored on under a rule.
            force: promote even if the rule does not pass.
            lineage: what the registry records besides the reference: ``parameters`` (the pipeline's),
                ``data`` (e.g. ``{"source": ..., "digest": ...}``), ``image`` (default ``$HML_IMAGE``), ``notes``.

        Raises:
            ModelLoadError: no model is bound.
            ConfigError: the features were never analysed, a metric is not a number, or the lake cannot
                be written.

        Example:
            >>> container.publish(run_id="run-1", metrics={"auc": 0.8})  # doctest: +SKIP
            '.hml/lake/models/car-crashes/unversioned/run-1/crashed.reference.json'
        """
        import joblib

        if self.model is None:
            raise ModelLoadError(f"model {self.name!r} has nothing to publish: call bind_model() first")
        if not self.distributions:
            raise ConfigError(f"model {self.name!r} has no feature analysis to publish: call analyze_distributions() first")
        if metrics:
            self.metrics = _numeric_metrics(metrics)
        rule = None if isinstance(promote, bool) else PromotionRule.from_config(promote, kind=getattr(self, "kind", "binary"))
        challenger_scores = score(self, holdout) if rule else None  # a bad rule or holdout fails before anything is written
        if rule and rule.metric not in (challenger_scores or {}):
            raise ConfigError(f"the promotion metric {rule.metric!r} is not evaluated: choose one of {', '.join(challenger_scores or {})}")
        run_id = run_id or os.environ.get("HML_RUN_ID") or f"local-{uuid.uuid4().hex[:8]}"
        git_commit = git_commit or os.environ.get("HML_GIT_COMMIT") or _git_head() or "unversioned"
        folder = f"models/{_safe(self.project_name)}/{_safe(git_commit)}/{_safe(run_id)}"
        buffer = io.BytesIO()
        model = self.model
        booster = model.__dict__.pop("_hml_booster", None) if hasattr(model, "__dict__") else None
        try:
            joblib.dump(model, buffer)
        finally:
            if booster is not None:
                model._hml_booster = booster
        payloads = {
            "model": (f"{folder}/{self.name}.joblib", buffer.getvalue()),
            "metadata": (f"{folder}/{self.name}.metadata.json", _json(self._metadata(with_distributions=False))),
            "distributions": (f"{folder}/{self.name}.distributions.json", _json(self.distributions)),
        }
        artifacts: dict[str, dict[str, Any]] = {}
        written: list[str] = []
        try:
            for key, (path, data) in payloads.items():
                uri = self.lake.write_bytes(path, data)
                written.append(path)
                artifacts[key] = {"uri": uri, "path": path, "sha256": sha256_bytes(data), "size": len(data)}
            reference = {
                "schema": REFERENCE_SCHEMA,
                "name": self.name,
                "project": self.project_name,
                "version": run_id,
                "run_id": run_id,
                "git_commit": git_commit,
                "created_at": _now(),
                "hmlcore_version": __version__,
                "target": self.target,
                "features_numeric": self.features_numeric,
                "features_categorical": self.features_categorical,
                "columns": self.encoder.columns,
                "metrics": self.metrics,
                "artifacts": artifacts,
            }
            reference_bytes = _json(reference)
            uri = self.lake.write_bytes(f"{folder}/{self.name}.reference.json", reference_bytes)
            record = registry_lineage(self, reference, uri, reference_bytes, lineage)
        except BaseException:
            for path in written:
                self.lake.delete(path)
            raise
        self.decision = decide(
            self, version=run_id, rule=rule, challenger_scores=challenger_scores, holdout=holdout, force=force, promote=promote is not False
        )
        registry = ModelRegistry(self)
        registry.record({**record, "decision": decision_dict(self.decision)})
        if self.decision.promoted:
            registry.move(run_id, action="publish", reason=self.decision.reason, verify=False)
        self.reference, self.reference_uri = reference, uri
        return uri

    @property
    def current_path(self) -> str:
        """Where the pointer to the newest published reference lives, inside the lake."""
        return f"models/{self.project_name}/{self.name}/current.json"

    def dump_analysis(self) -> bytes:
        """The learnt encoder and distributions as JSON, to hand from one pipeline step to the next."""
        return json.dumps(self._metadata(), sort_keys=True).encode()

    def load_analysis(self, data: bytes) -> ModelContainer:
        """Take back what :meth:`dump_analysis` wrote.

        Raises:
            ModelLoadError: ``data`` is not an analysis of this container's features.
        """
        try:
            metadata = json.loads(data)
            encoder = FeatureEncoder.from_dict(metadata["encoder"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"the feature analysis is malformed: {exc}") from exc
        if encoder.features != self.features:
            raise ModelLoadError(f"the feature analysis covers {encoder.features}, but this container declares {self.features}")
        self.encoder = encoder
        self.distributions = metadata.get("distributions", {})
        return self

    def _metadata(self, *, with_distributions: bool = True) -> dict[str, Any]:
        metadata = {
            "encoder": self.encoder.to_dict(),
            "columns": self.encoder.columns,
            "defaults": self.defaults,
            "target": self.target,
        }
        if with_distributions:
            metadata["distributions"] = self.distributions
        return metadata

    # ----------------------------------------------------------------- loading
    def load(self, reference: str | None = None) -> ModelContainer:
        """Load the model named by ``reference`` (a URL or lake path of a reference JSON).

        Without ``reference``: the ``HML_MODEL_REFERENCE`` environment variable, else the newest
        published reference of this model in the lake. Every artifact is downloaded and its sha256
        checked against the reference *before* the model file is unpickled.

        Raises:
            ModelLoadError: the reference is missing or malformed, an artifact is missing, an artifact's
                digest differs from the reference (the message names the file and both digests), or the
                model was trained on other features than this container declares.

        Example:
            >>> shared.model_container().load("gs://bucket/hml/models/.../crashed.reference.json")  # doctest: +SKIP
            ModelContainer('crashed', version='run-1')
        """
        import joblib

        uri = reference or os.environ.get("HML_MODEL_REFERENCE") or self._current_reference()
        ref = self._read_json(uri, "reference")
        entries = _artifact_entries(ref, uri)
        blobs = {key: self._verified(artifact_uri, expected, uri) for key, (artifact_uri, expected) in entries.items()}
        try:
            metadata = json.loads(blobs["metadata"])
            encoder = FeatureEncoder.from_dict(metadata["encoder"])
            distributions = json.loads(blobs["distributions"]) if "distributions" in blobs else metadata.get("distributions", {})
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"metadata of {uri} is malformed: {type(exc).__name__}: {exc}") from exc
        if encoder.features != self.features:
            raise ModelLoadError(f"model {uri} was trained on features {encoder.features}, but this container declares {self.features}")
        try:
            model = joblib.load(io.BytesIO(blobs["model"]))
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad model file
            raise ModelLoadError(f"model file {entries['model'][0]} cannot be loaded: {type(exc).__name__}: {exc}") from exc
        self.encoder = encoder
        self.distributions = distributions
        self.metrics = dict(ref.get("metrics") or {})
        self.model = model
        _attach_fast_path(model)
        self.reference, self.reference_uri = ref, uri
        return self

    def _verified(self, artifact_uri: str, expected: str, reference_uri: str) -> bytes:
        try:
            data = self.lake.read_bytes(artifact_uri)
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

    def _current_reference(self) -> str:
        if not self.lake.exists(self.current_path):
            raise ModelLoadError(
                f"no published model {self.name!r} in {self.lake.url}: run the training pipeline first or set HML_MODEL_REFERENCE"
            )
        pointer = self._read_json(self.current_path, "pointer")
        if not isinstance(pointer.get("reference"), str):
            raise ModelLoadError(f"{self.lake.uri(self.current_path)} is malformed: no 'reference'")
        return str(pointer["reference"])

    def _read_json(self, uri: str, what: str) -> dict[str, Any]:
        try:
            data = json.loads(self.lake.read_bytes(uri))
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


def _numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"metric {key!r} must be a number, got {value!r}")
        out[str(key)] = float(value)
    return out


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()


def _git_head() -> str | None:
    """The current git commit of the working directory, if it is a git checkout."""
    import subprocess

    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    head = done.stdout.strip()
    return head[:12] if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", head) else None


def _attach_fast_path(model: Any) -> None:
    """Give an XGBoost classifier a single-threaded booster for fast in-place prediction."""
    get_booster = getattr(model, "get_booster", None)
    if get_booster is None or getattr(model, "n_classes_", 2) != 2:
        return
    try:
        booster = get_booster()
        booster.set_param({"nthread": 1})
    except Exception:  # noqa: BLE001 - no fast path, predict_proba still works
        return
    model._hml_booster = booster


def _isnull(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.isna(values))


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", str(text))[:80] or "x"
