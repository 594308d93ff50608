"""The ModelContainer: a model together with everything needed to use it again.

A container knows its features (numeric and categorical), its target and the kind of model
(``binary``, ``multiclass`` or ``regression``: see :mod:`hmlcore.model.target`), the distributions seen in
training, the encoder, and the trained model. :meth:`ModelContainer.predict` answers in the kind's
shape; :meth:`ModelContainer.evaluate` scores the model with the kind's metrics.
:meth:`ModelContainer.publish` writes the model in a format that cannot run code when loaded
(XGBoost's own, or skops: see :mod:`hmlcore.model.model_io`) and its metadata to the lake, then a *reference*
JSON that names every artifact with its sha256 and, with a signing key configured, signs it (see
:mod:`hmlcore.model.signing`); :meth:`ModelContainer.load` refuses a reference that is unsigned, wrongly signed
or that leaves the lake, and verifies each artifact before it parses the model.

Example:
    >>> container = ModelContainer("crashed", "car-crashes", ["age"], ["sex"], "dead")
    >>> container.features, container.kind
    (['age', 'sex'], 'binary')
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore._lazy import lazy_module
from hmlcore._version import __version__
from hmlcore.errors import ConfigError, FeatureError, ModelKindError, ModelLoadError, UntrustedModelError
from hmlcore.model._estimators import check_model, fast_predictor
from hmlcore.model.distributions import describe_distributions
from hmlcore.model.encoding import FeatureEncoder
from hmlcore.model.model_io import dump_model, load_model
from hmlcore.model.promotion import PromotionRule
from hmlcore.model.registry import Decision, ModelRegistry, decide, decision_dict, score
from hmlcore.model.registry import lineage as registry_lineage
from hmlcore.model.signing import sign, signing_key, verify
from hmlcore.model.target import KINDS, Target, missing_target
from hmlcore.storage.lake import Lake, sha256_bytes

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from hmlcore.app import HmlApp
else:
    np = lazy_module("numpy")

__all__ = ["ModelContainer"]

#: the version of the reference JSON's layout
REFERENCE_SCHEMA = 1
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: the first bytes of :meth:`ModelContainer.serialize_model`'s output, before the format's name
_MODEL_HEADER = b"hml-model:"
#: the model file's extension by format
_EXTENSIONS = {"xgboost": "ubj", "skops": "skops", "joblib": "joblib"}
#: the keys of a classifier's answer besides the target's own
_ANSWER_KEYS = ("probability", "probabilities")


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
        kind: ``"binary"`` (default: two classes, answers a label and the positive class's probability),
            ``"multiclass"`` (a label and every class's probability) or ``"regression"`` (a number).
        threshold: a binary model answers the positive class when its probability is at least this.
        unknown_category: the policy for a category unseen in training: ``"error"`` (default, names the
            feature and the value), ``"ignore"`` (all zeros) or ``"other"`` (an ``<feature>=__other__`` column).
        missing_category: the policy for a missing categorical value: ``"ignore"`` (default, all zeros),
            ``"error"`` or ``"other"``. A missing numeric value is always NaN. See :mod:`hmlcore.model.encoding`.
        defaults: values used for features a request leaves out (none by default: a missing feature is an error).
        lake: where to publish; defaults to the lake of the app the container is registered with.

    Example:
        >>> c = ModelContainer("m", "p", ["x"], [], "y", kind="regression")
        >>> c.kind, c.classes
        ('regression', [])
    """

    def __init__(
        self,
        name: str,
        project_name: str,
        features_numeric: Sequence[str],
        features_categorical: Sequence[str],
        target: str,
        *,
        kind: str = "binary",
        threshold: float = 0.5,
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
        if kind not in KINDS:
            raise ConfigError(f"model {name!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
        if kind != "regression" and target in _ANSWER_KEYS:
            raise ConfigError(f"target {target!r} is a key of the model's answer too: rename the target column")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
            raise ConfigError(f"model {name!r}: threshold {threshold!r} must be a number between 0 and 1")
        self.name = name
        self.project_name = project_name
        self.features_numeric = list(features_numeric)
        self.features_categorical = list(features_categorical)
        self.target = target
        self.kind = kind
        self.threshold = float(threshold)
        self.target_info = Target(target, kind=kind)
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
        self._fast: Any = None
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
    def classes(self) -> list[Any]:
        """The class labels in code order (the positive class of a binary model last); empty for regression."""
        return list(self.target_info.classes)

    @property
    def target_distribution(self) -> dict[str, Any]:
        """The training target's summary: class counts, or a regression target's statistics and histogram."""
        return self.target_info.distribution

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
        """Learn the categories and summarise every feature of the training frame ``df``, and its target.

        If ``df`` holds the target, rows whose target is missing are left out (their count printed to
        stderr) and the target is learnt: a classifier's class labels (:attr:`classes`), a regression
        target's distribution (:attr:`target_distribution`).

        Raises:
            FeatureError: ``df`` lacks a declared feature or is empty, or the target does not fit the kind
                (a binary target with other than two classes, a regression target that is not numeric).
        """
        self._check_frame(df, need_target=False)
        if self.target in df.columns:
            df = self.drop_missing_target(df)
            self.target_info.fit(df[self.target])
        self.encoder.fit(df)
        self.distributions = describe_distributions(df, self.features_numeric, self.features_categorical)
        return self

    def drop_missing_target(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` without the rows whose target is missing; their count is printed to stderr.

        Raises:
            FeatureError: every row's target is missing.
        """
        self._check_frame(df, need_target=True)
        missing = missing_target(df[self.target])
        if not missing.any():
            return df
        count = int(missing.sum())
        if count == len(df):
            raise FeatureError(f"target {self.target!r} is missing in all {count} rows")
        print(f"{self.name}: left out {count} of {len(df)} rows whose target {self.target!r} is missing", file=sys.stderr)
        return df.loc[~missing]

    def build_training_matrix(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(X, y)`` for ``df``: the encoded features and the encoded target.

        ``y`` holds the class codes ``0..k-1`` (int64) of a classifier, in the order of :attr:`classes`,
        or the float64 values of a regression target. Rows whose target is missing are left out (their
        count printed). Learns the categories and the target first if :meth:`analyze_distributions` has not run.

        Raises:
            FeatureError: a feature or the target is missing, the target does not fit the kind, or a label
                was not seen when the target was analysed.
        """
        df = self.drop_missing_target(df)
        if (not self.encoder.categories and self.features_categorical) or not self.target_info.fitted:
            self.analyze_distributions(df)
        return self.encoder.transform(df), self.target_info.encode(df[self.target])

    def target_codes(self, df: pd.DataFrame) -> np.ndarray:
        """The encoded target of ``df`` (class codes, or floats for regression), e.g. to compare with predictions.

        Raises:
            FeatureError: ``df`` lacks the target, a target is missing (see :meth:`drop_missing_target`)
                or a label was never seen in training.
        """
        self._check_frame(df, need_target=True)
        missing = missing_target(df[self.target])
        if missing.any():
            raise FeatureError(
                f"target {self.target!r} is missing in {int(missing.sum())} of {len(df)} rows: drop them first (drop_missing_target)"
            )
        return self.target_info.encode(df[self.target])

    def _check_frame(self, df: pd.DataFrame, *, need_target: bool) -> None:
        needed = self.features + ([self.target] if need_target else [])
        missing = [c for c in needed if c not in df.columns]
        if missing:
            raise FeatureError(f"the data lacks column(s): {', '.join(missing)}", [{"feature": c, "message": "missing"} for c in missing])
        if len(df) == 0:
            raise FeatureError("the data has no rows")

    def bind_model(self, model: Any) -> ModelContainer:
        """Attach the trained model: any estimator with the scikit-learn API that fits the container's kind.

        A classifier (``predict_proba``) for ``binary`` and ``multiclass``, trained on the class codes that
        :meth:`build_training_matrix` returns; a regressor (``predict``) for ``regression``.

        Raises:
            ModelKindError: the model does not fit the kind, the number of classes or the encoded columns.
        """
        columns = len(self.encoder.columns) if self.encoder.categories or not self.features_categorical else None
        check_model(model, name=self.name, kind=self.kind, classes=self.target_info.classes, columns=columns)
        self.model = model
        self._fast = fast_predictor(model, self.kind)
        return self

    def serialize_model(self) -> bytes:
        """The bound model as bytes, to hand from one pipeline step to the next (see :meth:`deserialize_model`).

        The bytes are a header line naming the format, then the model in that format (see
        :func:`hmlcore.model.model_io.dump_model`): never a pickle unless ``HML_ALLOW_PICKLE`` allows it.
        """
        if self.model is None:
            raise ModelLoadError(f"model {self.name!r} has nothing to serialize: call bind_model() first")
        data, fmt = dump_model(self.model)
        return _MODEL_HEADER + fmt.encode() + b"\n" + data

    def deserialize_model(self, data: bytes) -> ModelContainer:
        """Bind the model that :meth:`serialize_model` wrote.

        Raises:
            UntrustedModelError: the bytes are a pickle (or have no header) and ``HML_ALLOW_PICKLE`` is not set.
            ModelLoadError: the bytes are not a model :meth:`serialize_model` wrote.
        """
        fmt, body = "joblib", data  # written before the header existed: a joblib pickle
        if data.startswith(_MODEL_HEADER):
            line, _, body = data[len(_MODEL_HEADER) :].partition(b"\n")
            fmt = line.decode("ascii", errors="replace")
        return self.bind_model(load_model(body, fmt, source=f"the serialized model {self.name!r}"))

    # ----------------------------------------------------------------- predicting
    def encode(self, data: Any) -> np.ndarray:
        """Encode a DataFrame, a list of records or one record; records may leave out features with declared defaults."""
        return self.encoder.transform(data, defaults=self.defaults)

    def _loaded(self) -> Any:
        if self.model is None:
            raise ModelLoadError(f"model {self.name!r} is not loaded: call load() or bind_model() first")
        return self.model

    def _scores(self, features: np.ndarray) -> np.ndarray:
        """``(n,)`` P(positive class) of a binary model, ``(n, k)`` probabilities of a multiclass one, ``(n,)`` values of a regressor."""
        model = self._loaded()
        if self._fast is not None:
            return self._fast(features)  # type: ignore[no-any-return]
        if self.kind == "regression":
            return np.asarray(model.predict(features), dtype=np.float64).reshape(len(features))
        proba = np.asarray(model.predict_proba(features), dtype=np.float64)
        return proba[:, 1] if self.kind == "binary" else proba

    def predict_proba(self, features: Any) -> np.ndarray:
        """The ``(n, k)`` class probabilities of each row, columns in the order of :attr:`classes`.

        Args:
            features: an encoded matrix (:meth:`encode`), or data to encode first (a DataFrame, records).

        Raises:
            ModelKindError: the model is a regressor.
        """
        if self.kind == "regression":
            raise ModelKindError(f"model {self.name!r} is a regression model: it has no class probabilities; use predict()")
        scores = self._scores(self._matrix(features))
        return np.column_stack([1.0 - scores, scores]) if self.kind == "binary" else scores

    def predict(self, features: Any) -> list[dict[str, Any]]:
        """One answer per row, shaped by the kind; labels are the original class values.

        - ``binary``: ``{"<target>": label, "probability": p}``, ``p`` the probability of the positive
          class (``classes[1]``), the label positive when ``p >= threshold``;
        - ``multiclass``: ``{"<target>": label, "probabilities": {class: p, ...}}`` (summing to 1);
        - ``regression``: ``{"<target>": value}``.

        Args:
            features: an encoded matrix (:meth:`encode`), or data to encode first (a DataFrame, records).

        Example:
            >>> container.predict([{"age": 30, "sex": "f"}])  # doctest: +SKIP
            [{'dead': False, 'probability': 0.0123}]
        """
        scores = self._scores(self._matrix(features))
        target = self.target
        if self.kind == "regression":
            return [{target: value} for value in scores.tolist()]
        classes = self.target_info.classes
        if not classes:
            raise ModelLoadError(f"model {self.name!r} does not know its classes: analyze the training data or load() a published model")
        if self.kind == "binary":
            negative, positive, threshold = classes[0], classes[1], self.threshold
            return [{target: positive if p >= threshold else negative, "probability": p} for p in scores.tolist()]
        names = self.target_info.class_names
        best = scores.argmax(axis=1).tolist()
        rows = scores.tolist()
        return [{target: classes[i], "probabilities": dict(zip(names, row, strict=True))} for i, row in zip(best, rows, strict=True)]

    def _matrix(self, features: Any) -> np.ndarray:
        return features if isinstance(features, np.ndarray) else self.encode(features)

    def evaluate(self, df: pd.DataFrame) -> dict[str, float]:
        """Score the model on the labelled rows of ``df`` with the kind's metrics (see :mod:`hmlcore.model.evaluation`)."""
        from hmlcore.model.evaluation import evaluate  # numpy and sklearn's metrics: serving never evaluates

        return evaluate(self, df)

    def assess(self, df: pd.DataFrame, *, resamples: int | None = None) -> dict[str, Any]:
        """The model's verdict on the labelled rows of ``df``: metrics, baseline, intervals, rows left out
        (see :mod:`hmlcore.model.assessment`)."""
        from hmlcore.model.assessment import RESAMPLES, assess  # numpy and sklearn's metrics: serving never evaluates

        return assess(self, df, resamples=RESAMPLES if resamples is None else resamples)

    def evaluation_report(
        self,
        df: pd.DataFrame,
        *,
        metrics: Mapping[str, float] | None = None,
        verdict: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        split: Mapping[str, Any] | None = None,
    ) -> str:
        """A self-contained HTML page evaluating the model on ``df`` (see :mod:`hmlcore.model.evaluation`)."""
        from hmlcore.model.evaluation import (
            evaluation_report,  # numpy, sklearn's metrics and jinja2: serving never evaluates
        )

        return evaluation_report(self, df, metrics=metrics, verdict=verdict, run_id=run_id, split=split)

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
        training_rows: Any = None,
    ) -> str:
        """Write the model and its metadata to the lake, then the reference JSON; return the reference URL.

        Artifacts (the model as ``<name>.ubj`` or ``<name>.skops``, see :mod:`hmlcore.model.model_io`;
        ``<name>.metadata.json`` with the encoder and its column order; ``<name>.distributions.json``) go
        under ``models/<project>/<commit>/<run-id>/``, each written atomically. The reference (artifact
        URIs, sha256, sizes, the model's format, created-at, git commit, run id, hmlcore version, metrics)
        is written last, so a reference never names an artifact that is not fully written; if any write
        fails, the artifacts already written are removed again. With a signing key configured
        (``HML_SIGNING_KEY`` or ``HML_SIGNING_KEY_FILE``, see :mod:`hmlcore.model.signing`) the reference is
        signed. The version is recorded in the model registry (:mod:`hmlcore.model.registry`) with its lineage,
        and ``models/<project>/<name>/current.json`` points at it if it is promoted: always with
        ``promote=True``; never with ``promote=False`` (a challenger); with a promotion rule (a
        :class:`~hmlcore.model.promotion.PromotionRule` or the dict ``shared.PROMOTION`` declares), only if
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
                ``data`` (e.g. ``{"source": ..., "digest": ...}``), ``split`` (how the rows were split, see
                :class:`~hmlcore.model.split.SplitSpec`), ``evaluation`` (the verdict on the validation rows,
                see :func:`~hmlcore.model.assessment.assess`), ``image`` (default ``$HML_IMAGE``), ``notes``.
            training_rows: the identities of the rows the model trained on (:data:`~hmlcore.model.split.ROW_ID`);
                the gate then scores this version, once it is the champion, only on rows it never saw.

        Raises:
            ModelLoadError: no model is bound.
            UntrustedModelError: no safe format can hold the model and ``HML_ALLOW_PICKLE`` is not set.
            ConfigError: the features were never analysed, a metric is not a number, the signing key is
                invalid, or the lake cannot be written.

        Example:
            >>> container.publish(run_id="run-1", metrics={"auc": 0.8})  # doctest: +SKIP
            '.hml/lake/models/car-crashes/unversioned/run-1/crashed.reference.json'
        """
        if self.model is None:
            raise ModelLoadError(f"model {self.name!r} has nothing to publish: call bind_model() first")
        if not self.distributions:
            raise ConfigError(f"model {self.name!r} has no feature analysis to publish: call analyze_distributions() first")
        if not self.target_info.fitted:
            raise ConfigError(
                f"model {self.name!r} has no analysis of its target {self.target!r} to publish: "
                "call analyze_distributions() on the training rows"
            )
        if metrics:
            self.metrics = _numeric_metrics(metrics)
        rule = None if isinstance(promote, bool) else PromotionRule.from_config(promote, kind=self.kind)
        verdict = score(self, holdout) if rule else None  # a bad rule or holdout fails before anything is written
        evaluated = (verdict or {}).get("metrics") or {}
        if rule and rule.metric not in evaluated:
            raise ConfigError(f"the promotion metric {rule.metric!r} is not evaluated: choose one of {', '.join(evaluated)}")
        run_id = run_id or _env.RUN_ID.get() or f"local-{uuid.uuid4().hex[:8]}"
        git_commit = git_commit or _env.GIT_COMMIT.get() or _git_head() or "unversioned"
        folder = f"models/{_safe(self.project_name)}/{_safe(git_commit)}/{_safe(run_id)}"
        key = signing_key()
        model_bytes, model_format = dump_model(self.model)
        payloads = {
            "model": (f"{folder}/{self.name}.{_EXTENSIONS[model_format.split(':')[0]]}", model_bytes),
            "metadata": (f"{folder}/{self.name}.metadata.json", _json(self._metadata(with_distributions=False))),
            "distributions": (f"{folder}/{self.name}.distributions.json", _json(self.distributions)),
        }
        artifacts: dict[str, dict[str, Any]] = {}
        written: list[str] = []
        try:
            for name, (path, data) in payloads.items():
                uri = self.lake.write_bytes(path, data)
                written.append(path)
                artifacts[name] = {"uri": uri, "path": path, "sha256": sha256_bytes(data), "size": len(data)}
            artifacts["model"]["format"] = model_format
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
                "kind": self.kind,
                "classes": self.classes,
                "features_numeric": self.features_numeric,
                "features_categorical": self.features_categorical,
                "columns": self.encoder.columns,
                "metrics": self.metrics,
                "artifacts": artifacts,
            }
            if key is not None:
                reference = sign(reference, key)
            reference_bytes = _json(reference)
            uri = self.lake.write_bytes(f"{folder}/{self.name}.reference.json", reference_bytes)
            record = registry_lineage(self, reference, uri, reference_bytes, lineage)
        except BaseException:
            for path in written:
                self.lake.delete(path)
            raise
        registry = ModelRegistry(self)
        if training_rows is not None:
            record["training_rows"] = registry.record_training_rows(run_id, training_rows)
        self.decision = decide(
            self, version=run_id, rule=rule, verdict=verdict, holdout=holdout, record=record, force=force, promote=promote is not False
        )
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
        target = self._saved_target(metadata, "the feature analysis")
        self.encoder = encoder
        self.distributions = metadata.get("distributions", {})
        self.target_info = target
        return self

    def _saved_target(self, metadata: dict[str, Any], source: str, model: Any = None) -> Target:
        """The target saved in ``metadata``, checked against this container's kind and target."""
        kind = metadata.get("kind", "binary")  # published before the kind was saved: binary was the only kind
        if kind != self.kind:
            raise ModelKindError(f"{source}: a {kind} model, but the container {self.name!r} is of kind {self.kind!r}")
        saved = metadata.get("target_info") or {"name": metadata.get("target", self.target), "kind": kind}
        try:
            target = Target.from_dict(saved)
        except ValueError as exc:
            raise ModelLoadError(f"{source} has a malformed target: {exc}") from exc
        if target.name != self.target:
            raise ModelLoadError(f"{source} predicts {target.name!r}, but the container's target is {self.target!r}")
        if target.is_classifier and not target.classes and model is not None and getattr(model, "classes_", None) is not None:
            target.classes = [c.item() if isinstance(c, np.generic) else c for c in np.asarray(model.classes_).tolist()]
        return target

    def _metadata(self, *, with_distributions: bool = True) -> dict[str, Any]:
        metadata = {
            "encoder": self.encoder.to_dict(),
            "columns": self.encoder.columns,
            "defaults": self.defaults,
            "target": self.target,
            "kind": self.kind,
            "target_info": self.target_info.to_dict(),
        }
        if with_distributions:
            metadata["distributions"] = self.distributions
        return metadata

    # ----------------------------------------------------------------- loading
    def load(self, reference: str | None = None) -> ModelContainer:
        """Load the model named by ``reference`` (a URL or lake path of a reference JSON).

        Without ``reference``: the ``HML_MODEL_REFERENCE`` environment variable, else the newest
        published reference of this model in the lake. In this order, each step before anything later
        is read: the pointer and the reference must lie in the lake; with a signing key configured the
        reference's signature must match; every artifact must lie in the lake, and its sha256 must match
        the reference; then the model file is parsed in its recorded format (a pickle only with
        ``HML_ALLOW_PICKLE``, see :mod:`hmlcore.model.model_io`).

        Raises:
            UntrustedModelError: the pointer, the reference or an artifact lies outside the lake; the
                reference is unsigned or wrongly signed while a key is configured; or the model is a
                pickle and pickles are not allowed.
            ModelLoadError: the reference is missing or malformed, an artifact is missing, an artifact's
                digest differs from the reference (the message names the file and both digests), or the
                model was trained on other features than this container declares.

        Example:
            >>> shared.model_container().load("gs://bucket/hml/models/.../crashed.reference.json")  # doctest: +SKIP
            ModelContainer('crashed', version='run-1')
        """
        key = signing_key()
        uri = reference or _env.MODEL_REFERENCE.get() or self._current_reference()
        ref = self._read_json(self._in_lake(uri, "reference"), "reference")
        if key is not None:
            verify(ref, key, source=uri)
        entries = _artifact_entries(ref, uri)
        for artifact_uri, _ in entries.values():
            self._in_lake(artifact_uri, f"artifact of {uri}")
        blobs = {key: self._verified(artifact_uri, expected, uri) for key, (artifact_uri, expected) in entries.items()}
        try:
            metadata = json.loads(blobs["metadata"])
            encoder = FeatureEncoder.from_dict(metadata["encoder"])
            distributions = json.loads(blobs["distributions"]) if "distributions" in blobs else metadata.get("distributions", {})
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"metadata of {uri} is malformed: {type(exc).__name__}: {exc}") from exc
        if encoder.features != self.features:
            raise ModelLoadError(f"model {uri} was trained on features {encoder.features}, but this container declares {self.features}")
        if metadata.get("kind", "binary") != self.kind:  # before unpickling anything
            self._saved_target(metadata, f"model {uri}")
        model = load_model(blobs["model"], _model_format(ref), source=f"model file {entries['model'][0]}")
        target = self._saved_target(metadata, f"model {uri}", model)
        check_model(model, name=self.name, kind=self.kind, classes=target.classes, columns=len(encoder.columns))
        self.encoder = encoder
        self.distributions = distributions
        self.target_info = target
        self.metrics = dict(ref.get("metrics") or {})
        self.model = model
        self._fast = fast_predictor(model, self.kind)
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
        return self._in_lake(str(pointer["reference"]), f"reference named by {self.lake.uri(self.current_path)}")

    def _in_lake(self, uri: str, what: str) -> str:
        """``uri`` if it lies in the lake; refused before anything is read from it otherwise."""
        if not self.lake.contains(uri):
            raise UntrustedModelError(f"the {what} {uri} lies outside the lake {self.lake.url}: it was not read")
        return uri

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


def _model_format(ref: dict[str, Any]) -> str:
    """The model file's format recorded in a reference; references written before formats were recorded hold a pickle."""
    fmt = ref["artifacts"]["model"].get("format", "joblib")
    return fmt if isinstance(fmt, str) else repr(fmt)


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
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    head = done.stdout.strip()
    return head[:12] if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", head) else None


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", str(text))[:80] or "x"
