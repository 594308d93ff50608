"""The ModelContainer: a model together with what it needs to answer again: its spec, encoder and target.

A container knows its features (numeric and categorical), its target and the kind of model
(``binary``, ``multiclass`` or ``regression``: see :mod:`hmlcore.model.target`), the distributions seen in
training, the encoder, and the trained model. :meth:`ModelContainer.predict` answers in the kind's
shape; :meth:`ModelContainer.evaluate` scores the model with the kind's metrics.

The rest is done by functions beside it, which the container's methods call: :meth:`ModelContainer.publish`
(:mod:`hmlcore.model.publishing`) saves the artifacts and a signed reference (:mod:`hmlcore.model.artifacts`,
:mod:`hmlcore.model.signing`), records the version (:mod:`hmlcore.model.registry`) and asks the promotion
gate (:mod:`hmlcore.model.gate`); :meth:`ModelContainer.load` (:mod:`hmlcore.model.artifacts`) refuses a
reference that is unsigned, wrongly signed or that leaves the lake, and verifies each artifact before it
parses the model.

Example:
    >>> container = ModelContainer("crashed", "car-crashes", ["age"], ["sex"], "dead")
    >>> container.features, container.kind
    (['age', 'sex'], 'binary')
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import ConfigError, FeatureError, ModelKindError, ModelLoadError
from hmlcore.model import artifacts, publishing
from hmlcore.model._estimators import check_model, fast_predictor
from hmlcore.model.distributions import describe_distributions
from hmlcore.model.encoding import FeatureEncoder
from hmlcore.model.target import KINDS, Target, missing_target
from hmlcore.storage.lake import Lake

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from hmlcore.model.gate import Decision
    from hmlcore.model.promotion import PromotionRule
else:
    np = lazy_module("numpy")

__all__ = ["ModelContainer"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: the keys of a classifier's answer besides the target's own
_ANSWER_KEYS = ("probability", "probabilities")


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
        lake: where to publish; defaults to the lake the container is given when it is registered (see
            :meth:`attach`).

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
        #: the image the model is trained and served in, recorded in the registry (see :meth:`attach`)
        self.image: str | None = None
        self._lake = Lake(lake) if isinstance(lake, str) else lake
        self._lake_source: Callable[[], Lake] | None = None

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

    def attach(self, *, lake: Callable[[], Lake], image: str | None = None) -> ModelContainer:
        """Give the container the lake it publishes to and loads from when it was made without one, and the
        image it runs in; ``HmlApp.register_model`` does, with its own.

        Args:
            lake: returns the lake, called on first use (a package's CLI registers its models before it
                knows its platform's settings, and may never touch the lake).
            image: the image recorded with each published version (``$HML_IMAGE`` takes precedence).
        """
        self._lake_source = lake
        self.image = image
        return self

    @property
    def lake(self) -> Lake:
        """The lake the container publishes to and loads from."""
        if self._lake is None:
            if self._lake_source is None:
                raise ConfigError(f"model {self.name!r} has no lake: pass lake= or register it with app.register_model")
            self._lake = self._lake_source()
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
        :func:`hmlcore.model.artifacts.model_bytes`): never a pickle unless ``HML_ALLOW_PICKLE`` allows it.

        Raises:
            ModelLoadError: no model is bound.
        """
        return artifacts.model_bytes(self)

    def deserialize_model(self, data: bytes) -> ModelContainer:
        """Bind the model that :meth:`serialize_model` wrote.

        Raises:
            UntrustedModelError: the bytes are a pickle (or have no header) and ``HML_ALLOW_PICKLE`` is not set.
            ModelLoadError: the bytes are not a model :meth:`serialize_model` wrote.
        """
        return self.bind_model(artifacts.model_from_bytes(self, data))

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

    # ----------------------------------------------------------------- publishing and loading
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

        The artifacts go under ``models/<project>/<commit>/<run-id>/`` in formats that cannot run code when
        read, and the reference naming them with their sha256 is written last, signed when a key is
        configured (see :func:`hmlcore.model.artifacts.save`). The version is recorded in the registry
        (:mod:`hmlcore.model.registry`) with its lineage, and ``models/<project>/<name>/current.json`` points
        at it if it is promoted: always with ``promote=True``; never with ``promote=False`` (a challenger);
        with a promotion rule (a :class:`~hmlcore.model.promotion.PromotionRule` or the dict
        ``shared.PROMOTION`` declares), only if the gate (:func:`hmlcore.model.gate.decide`) finds that the
        new model beats the version in service on ``holdout``. :attr:`decision` says what happened and why.

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
            training_rows: the rows the model trained on: a frame with their identities
                (:data:`~hmlcore.model.split.ROW_ID`) and the features, whose values the registry hashes; the
                gate then scores this version and any later one only on rows whose feature values neither
                saw (a copy of a training row is not unseen). Identities alone are accepted too: then only
                those rows are left out, not copies of them, and the gate's line says so.

        Raises:
            ModelLoadError: no model is bound.
            UntrustedModelError: no safe format can hold the model and ``HML_ALLOW_PICKLE`` is not set.
            ConfigError: the features were never analysed, a metric is not a number, the signing key is
                invalid, or the lake cannot be written.

        Example:
            >>> container.publish(run_id="run-1", metrics={"auc": 0.8})  # doctest: +SKIP
            '.hml/lake/models/car-crashes/unversioned/run-1/crashed.reference.json'
        """
        published = publishing.publish(
            self,
            run_id=run_id,
            git_commit=git_commit,
            metrics=metrics,
            promote=promote,
            holdout=holdout,
            force=force,
            lineage_given=lineage,
            training_rows=training_rows,
        )
        self.decision = published.decision
        self.reference, self.reference_uri = published.reference, published.uri
        return published.uri

    @property
    def current_path(self) -> str:
        """Where the pointer to the newest published reference lives, inside the lake."""
        return f"models/{self.project_name}/{self.name}/current.json"

    def dump_analysis(self) -> bytes:
        """The learnt encoder and distributions as JSON, to hand from one pipeline step to the next."""
        return json.dumps(artifacts.metadata(self), sort_keys=True).encode()

    def load_analysis(self, data: bytes) -> ModelContainer:
        """Take back what :meth:`dump_analysis` wrote.

        Raises:
            ModelLoadError: ``data`` is not an analysis of this container's features.
        """
        self.encoder, self.distributions, self.target_info = artifacts.read_analysis(self, data)
        return self

    def load(self, reference: str | None = None) -> ModelContainer:
        """Load the model named by ``reference`` (a URL or lake path of a reference JSON), verified first.

        Without ``reference``: the ``HML_MODEL_REFERENCE`` environment variable, else the newest published
        reference of this model in the lake. Nothing outside the lake is read, a signature is checked when a
        key is configured and every artifact's sha256 before the model is parsed (see
        :func:`hmlcore.model.artifacts.load`).

        Raises:
            UntrustedModelError: the pointer, the reference or an artifact lies outside the lake; the
                reference is unsigned or wrongly signed while a key is configured; or the model is a
                pickle and pickles are not allowed.
            ModelLoadError: the reference is missing or malformed, an artifact is missing or differs from
                the reference, or the model was trained on other features than this container declares.

        Example:
            >>> shared.model_container().load("gs://bucket/hml/models/.../crashed.reference.json")  # doctest: +SKIP
            ModelContainer('crashed', version='run-1')
        """
        loaded = artifacts.load(self, reference)
        self.encoder = loaded.encoder
        self.distributions = loaded.distributions
        self.target_info = loaded.target
        self.metrics = loaded.metrics
        self.model = loaded.model
        self._fast = fast_predictor(loaded.model, self.kind)
        self.reference, self.reference_uri = loaded.reference, loaded.uri
        return self
