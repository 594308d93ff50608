"""Model files that cannot run code: safe formats, pickle only on opt-in, tampered files refused unread."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from hmlcore.errors import HmlError, ModelLoadError, UntrustedModelError
from hmlcore.model.model_io import ALLOW_PICKLE_ENV, dump_model, load_model
from hmlcore.storage.lake import sha256_bytes

from ._serving import container, publish_model, training_frame


@pytest.fixture(autouse=True)
def _no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)


def matrix(rows: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, 4))
    labels = (features[:, 0] + features[:, 1] ** 2 + rng.normal(0, 0.3, rows) > 1).astype(int)
    values = features @ np.array([1.5, -2.0, 0.5, 0.0]) + rng.normal(0, 0.1, rows)
    return features, labels, values


def models() -> dict[str, tuple[object, str]]:
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier, XGBRegressor

    features, labels, values = matrix()
    return {
        "xgb-classifier": (XGBClassifier(n_estimators=10, max_depth=3, n_jobs=1).fit(features, labels), "xgboost:XGBClassifier"),
        "xgb-regressor": (XGBRegressor(n_estimators=10, max_depth=3, n_jobs=1).fit(features, values), "xgboost:XGBRegressor"),
        "sklearn-pipeline": (make_pipeline(StandardScaler(), LogisticRegression()).fit(features, labels), "skops"),
        "sklearn-forest-regressor": (RandomForestRegressor(n_estimators=5, random_state=0).fit(features, values), "skops"),
    }


@pytest.mark.parametrize("name", ["xgb-classifier", "xgb-regressor", "sklearn-pipeline", "sklearn-forest-regressor"])
def test_round_trip_keeps_class_and_predictions_without_pickle(name: str):
    model, expected_format = models()[name]
    data, fmt = dump_model(model)
    assert fmt == expected_format
    assert not data.startswith(b"\x80"), "a pickle was written"
    loaded = load_model(data, fmt)
    assert type(loaded) is type(model)
    features = matrix(seed=2)[0]
    predict = "predict_proba" if hasattr(model, "predict_proba") else "predict"
    np.testing.assert_allclose(getattr(loaded, predict)(features), getattr(model, predict)(features), rtol=1e-6)


class Scorer:
    """A model of the user's own: no safe format holds it."""

    def predict(self, features: np.ndarray) -> np.ndarray:
        return features.sum(axis=1)


def test_pickle_only_when_opted_in(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(UntrustedModelError, match=f"cannot be stored safely.*{ALLOW_PICKLE_ENV}=1"):
        dump_model(Scorer())
    data, fmt = dump_model(Scorer(), allow_pickle=True)
    assert fmt == "joblib"
    with pytest.raises(UntrustedModelError, match=f"is a pickle.*not loaded.*{ALLOW_PICKLE_ENV}=1"):
        load_model(data, fmt)
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    assert load_model(data, fmt).predict(np.ones((2, 3))).tolist() == [3.0, 3.0]
    assert dump_model(Scorer())[1] == "joblib"


def test_unknown_format_and_untrusted_skops_types_are_refused():
    from skops.io import dumps
    from xgboost import XGBClassifier

    features, labels, _ = matrix()
    with pytest.raises(ModelLoadError, match="format 'pickle'"):
        load_model(b"x", "pickle")
    untrusted = dumps(XGBClassifier(n_estimators=2).fit(features, labels))  # skops does not trust xgboost's classes
    with pytest.raises(UntrustedModelError, match="xgboost.*was not loaded"):
        load_model(untrusted, "skops")
    with pytest.raises(ModelLoadError, match="cannot be loaded as xgboost"):
        load_model(b"not a model", "xgboost:XGBClassifier")


class Canary:
    """Unpickling this creates the file ``path``: proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def tamper_with_pickle(reference: str, canary: Path, *, fmt: str | None) -> None:
    """Replace the published model by a pickle that touches ``canary``, updating the reference's digest (and format)."""
    ref = json.loads(Path(reference).read_text())
    model = ref["artifacts"]["model"]
    payload = pickle.dumps(Canary(canary))
    Path(model["uri"]).write_bytes(payload)
    model["sha256"], model["size"] = sha256_bytes(payload), len(payload)
    if fmt is not None:
        model["format"] = fmt
    Path(reference).write_text(json.dumps(ref))


@pytest.mark.parametrize("fmt", ["joblib", None], ids=["declared-pickle", "pickle-posing-as-xgboost"])
def test_a_tampered_model_with_its_digest_updated_is_refused_and_never_unpickled(tmp_path: Path, fmt: str | None):
    reference = publish_model(tmp_path / "lake")
    assert json.loads(Path(reference).read_text())["artifacts"]["model"]["format"] == "xgboost:XGBClassifier"
    canary = tmp_path / "canary"
    tamper_with_pickle(reference, canary, fmt=fmt)
    with pytest.raises(UntrustedModelError if fmt == "joblib" else ModelLoadError, match="not loaded|cannot be loaded as xgboost"):
        container(tmp_path / "lake").load()
    assert not canary.exists(), "the tampered pickle ran"


def test_the_canary_does_run_once_pickles_are_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The opt-in really unpickles: the test above would notice if loading ran the pickle."""
    reference = publish_model(tmp_path / "lake")
    canary = tmp_path / "canary"
    tamper_with_pickle(reference, canary, fmt="joblib")
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    with pytest.raises(HmlError):
        container(tmp_path / "lake").load()  # the canary is no model, but it ran
    assert canary.exists()


def test_steps_hand_over_models_in_safe_formats(tmp_path: Path):
    from sklearn.linear_model import LogisticRegression

    frame = training_frame()
    source = container(tmp_path).analyze_distributions(frame)
    features, target = source.build_training_matrix(frame)
    source.bind_model(LogisticRegression(max_iter=500).fit(features, target))
    data = source.serialize_model()
    assert data.startswith(b"hml-model:skops\n")
    copy = container(tmp_path).load_analysis(source.dump_analysis()).deserialize_model(data)
    np.testing.assert_allclose(copy.predict_proba(features), source.predict_proba(features))
    canary = tmp_path / "canary"
    with pytest.raises(UntrustedModelError, match="pickle"):
        container(tmp_path).load_analysis(source.dump_analysis()).deserialize_model(pickle.dumps(Canary(canary)))
    assert not canary.exists()


def test_publish_records_the_format_and_a_skops_model_loads_back(tmp_path: Path):
    from sklearn.linear_model import LogisticRegression

    frame = training_frame()
    source = container(tmp_path).analyze_distributions(frame)
    features, target = source.build_training_matrix(frame)
    source.bind_model(LogisticRegression(max_iter=500).fit(features, target))
    reference = source.publish(run_id="run-skops", git_commit="abc")
    model = json.loads(Path(reference).read_text())["artifacts"]["model"]
    assert model["format"] == "skops" and model["uri"].endswith(".skops")
    loaded = container(tmp_path).load()
    assert loaded.version == "run-skops"
    np.testing.assert_allclose(loaded.predict_proba(features), source.predict_proba(features))
