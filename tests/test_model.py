"""The model container: distributions, the training matrix, publish and verified load, and bad input."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hmlcore
from hmlcore.errors import ConfigError, FeatureError, ModelKindError, ModelLoadError, StorageError
from hmlcore.model.container import ModelContainer
from hmlcore.model.distributions import HISTOGRAM_BINS
from hmlcore.storage.lake import Lake


def frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(16, 90, size=n).astype(float)
    belt = rng.choice(["belted", "none"], size=n)
    role = rng.choice(["driver", "pass"], size=n)
    risk = (age > 60).astype(int) + (belt == "none").astype(int)
    dead = (risk + rng.random(n) > 1.5).astype(int)
    return pd.DataFrame({"age": age, "seatbelt": belt, "occupant_role": role, "dead": dead})


def container(lake: Path | str, **options) -> ModelContainer:
    return ModelContainer("crashed", "car-crashes", ["age"], ["seatbelt", "occupant_role"], "dead", lake=str(lake), **options)


def trained(lake: Path | str, df: pd.DataFrame | None = None) -> ModelContainer:
    from xgboost import XGBClassifier

    df = frame() if df is None else df
    c = container(lake).analyze_distributions(df)
    features, target = c.build_training_matrix(df)
    model = XGBClassifier(n_estimators=8, max_depth=2, n_jobs=1, random_state=0)
    return c.bind_model(model.fit(features, target))


def test_distributions_summarise_what_the_model_saw():
    df = frame()
    df.loc[:9, "age"] = np.nan
    c = container("unused").analyze_distributions(df)
    age = c.distributions["numeric"]["age"]
    present = df["age"].dropna().to_numpy()
    assert age["count"] == len(present) and age["missing"] == 10
    assert age["mean"] == pytest.approx(present.mean())
    assert age["std"] == pytest.approx(present.std(ddof=1))
    assert age["quantiles"]["p50"] == pytest.approx(np.median(present))
    assert age["histogram"]["edges"] == pytest.approx(list(np.linspace(present.min(), present.max(), HISTOGRAM_BINS + 1)))
    assert sum(age["histogram"]["counts"]) == len(present)
    belt = c.distributions["categorical"]["seatbelt"]
    assert belt["counts"] == df["seatbelt"].value_counts().to_dict()
    assert sum(belt["frequencies"].values()) == pytest.approx(1.0)


def test_training_matrix_uses_the_encoder_column_order():
    df = frame()
    c = container("unused").analyze_distributions(df)
    features, target = c.build_training_matrix(df)
    assert features.shape == (len(df), len(c.encoder.columns)) == (len(df), 5)
    assert c.encoder.columns == ["age", "seatbelt=belted", "seatbelt=none", "occupant_role=driver", "occupant_role=pass"]
    assert target.tolist() == df["dead"].tolist()
    np.testing.assert_array_equal(features, c.encode(df.to_dict("records")))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda df: df.drop(columns=["seatbelt"]), "lacks column.*seatbelt"),
        (lambda df: df.drop(columns=["dead"]), "lacks column.*dead"),
        (lambda df: df.assign(dead=1), r"target 'dead' has 1 class\(es\) \(1\): a binary model needs exactly two"),
        (lambda df: df.iloc[:0], "has no rows"),
        (lambda df: df.assign(dead=np.nan), "target 'dead' is missing in all 400 rows"),
    ],
    ids=["missing-feature", "missing-target", "one-class", "empty", "no-target-value"],
)
def test_bad_training_data_is_named(change, message):
    with pytest.raises(FeatureError, match=message):
        container("unused").build_training_matrix(change(frame()))


def test_publish_writes_artifacts_and_a_reference_that_describes_them(tmp_path):
    c = trained(tmp_path)
    uri = c.publish(run_id="run-7", git_commit="abc123", metrics={"auc": 0.81, "rows": 400})
    folder = tmp_path / "models" / "car-crashes" / "abc123" / "run-7"
    assert uri == str(folder / "crashed.reference.json")
    ref = json.loads(Path(uri).read_text())
    assert set(ref["artifacts"]) == {"model", "metadata", "distributions"}
    for artifact in ref["artifacts"].values():
        data = Path(artifact["uri"]).read_bytes()
        assert Path(artifact["uri"]).parent == folder
        assert artifact["sha256"] == hashlib.sha256(data).hexdigest()
        assert artifact["size"] == len(data)
    assert (ref["git_commit"], ref["run_id"], ref["hmlcore_version"]) == ("abc123", "run-7", hmlcore.__version__)
    assert ref["metrics"] == {"auc": 0.81, "rows": 400.0}
    assert ref["columns"] == c.encoder.columns
    assert ref["created_at"].endswith("+00:00")
    assert json.loads(Path(ref["artifacts"]["distributions"]["uri"]).read_text()) == c.distributions
    assert not [p for p in folder.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_load_gives_back_the_same_predictions(tmp_path):
    c = trained(tmp_path)
    df = frame(seed=1)
    expected = c.predict_proba(c.encode(df))
    c.publish(run_id="run-1", git_commit="abc")
    loaded = container(tmp_path).load()
    assert loaded.version == "run-1"
    assert loaded.encoder.columns == c.encoder.columns
    assert loaded.distributions == c.distributions
    np.testing.assert_allclose(loaded.predict_proba(loaded.encode(df)), expected, rtol=1e-6)
    one = loaded.predict_proba(loaded.encode(df.iloc[0].to_dict()))
    np.testing.assert_allclose(one[0], expected[0], rtol=1e-6)


def test_a_tampered_model_is_refused_before_it_is_unpickled(tmp_path, monkeypatch):
    c = trained(tmp_path)
    uri = c.publish(run_id="r", git_commit="g")
    ref = json.loads(Path(uri).read_text())
    model_file = Path(ref["artifacts"]["model"]["uri"])
    model_file.write_bytes(model_file.read_bytes() + b"evil")
    actual = hashlib.sha256(model_file.read_bytes()).hexdigest()
    import joblib

    monkeypatch.setattr(joblib, "load", lambda *a, **k: pytest.fail("unpickled a file that failed verification"))
    with pytest.raises(ModelLoadError) as info:
        container(tmp_path).load(uri)
    message = str(info.value)
    assert str(model_file) in message and actual in message and ref["artifacts"]["model"]["sha256"] in message


def test_a_missing_artifact_is_named(tmp_path):
    uri = trained(tmp_path).publish(run_id="r", git_commit="g")
    metadata = Path(json.loads(Path(uri).read_text())["artifacts"]["metadata"]["uri"])
    metadata.unlink()
    with pytest.raises(ModelLoadError, match=f"artifact {metadata} named by .* does not exist"):
        container(tmp_path).load(uri)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (b"{not json", "is not valid JSON"),
        (b"[1, 2]", "is not a JSON object"),
        (b"{}", "'artifacts' must be an object"),
        (b'{"artifacts": {"model": {"uri": "x", "sha256": "00"}}}', r"artifacts.model.sha256 is '00'"),
        (b'{"artifacts": {"model": {"uri": "x", "sha256": "' + b"0" * 64 + b'"}}}', "no artifacts.metadata"),
    ],
    ids=["not-json", "not-object", "no-artifacts", "bad-digest", "no-metadata"],
)
def test_a_malformed_reference_is_named(tmp_path, reference, message):
    path = tmp_path / "ref.json"
    path.write_bytes(reference)
    with pytest.raises(ModelLoadError, match=message):
        container(tmp_path).load(str(path))


def test_nothing_published_yet_says_what_to_do(tmp_path):
    with pytest.raises(ModelLoadError, match="no published model 'crashed'.*run the training pipeline"):
        container(tmp_path).load()
    with pytest.raises(ModelLoadError, match="does not exist"):
        container(tmp_path).load(str(tmp_path / "nope.json"))


def test_a_model_trained_on_other_features_is_refused(tmp_path):
    uri = trained(tmp_path).publish(run_id="r", git_commit="g")
    other = ModelContainer("crashed", "car-crashes", ["age", "speed"], ["seatbelt", "occupant_role"], "dead", lake=str(tmp_path))
    with pytest.raises(ModelLoadError, match="trained on features"):
        other.load(uri)


def test_a_lake_that_cannot_be_written_is_named_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "lake"
    blocker.write_text("a file where the lake folder should be")
    c = trained(blocker)
    with pytest.raises(StorageError, match=f"cannot write {blocker}/models"):
        c.publish(run_id="r", git_commit="g")
    assert c.reference is None


def test_a_failed_reference_write_removes_the_artifacts_already_written(tmp_path, monkeypatch):
    c = trained(tmp_path)
    real = Lake.write_bytes

    def failing(self, path, data):
        if path.endswith(".reference.json"):
            raise StorageError(f"cannot write {path}: disk full")
        return real(self, path, data)

    monkeypatch.setattr(Lake, "write_bytes", failing)
    with pytest.raises(StorageError, match="disk full"):
        c.publish(run_id="r", git_commit="g")
    folder = tmp_path / "models" / "car-crashes" / "g" / "r"
    assert not folder.exists() or not any(folder.iterdir())
    assert not (tmp_path / c.current_path).exists()


def test_publish_needs_a_model_analysed_features_and_numeric_metrics(tmp_path):
    with pytest.raises(ModelLoadError, match="call bind_model"):
        container(tmp_path).publish()
    with pytest.raises(ModelKindError, match="a object has neither predict nor predict_proba"):
        container(tmp_path).bind_model(object())
    with pytest.raises(ConfigError, match="call analyze_distributions"):
        container(tmp_path).bind_model(trained(tmp_path).model).publish()
    with pytest.raises(ConfigError, match="metric 'auc' must be a number, got 'high'"):
        trained(tmp_path).publish(metrics={"auc": "high"})


def test_run_id_and_commit_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HML_RUN_ID", "kfp-run-42")
    monkeypatch.setenv("HML_GIT_COMMIT", "deadbeef")
    uri = trained(tmp_path).publish()
    assert os.path.dirname(uri).endswith(os.path.join("models", "car-crashes", "deadbeef", "kfp-run-42"))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"unknown_category": "drop"}, "unknown='drop' is not a policy"), ({"missing_category": "x"}, "missing='x' is not a policy")],
)
def test_a_bad_policy_is_a_config_error(options, message):
    with pytest.raises(ConfigError, match=message):
        container("unused", **options)


def test_the_other_bucket_policy_is_saved_with_the_model(tmp_path):
    df = frame()
    c = container(tmp_path, unknown_category="other").analyze_distributions(df)
    from sklearn.linear_model import LogisticRegression

    features, target = c.build_training_matrix(df)
    c.bind_model(LogisticRegression().fit(features, target)).publish(run_id="r", git_commit="g")
    loaded = container(tmp_path).load()
    assert loaded.encoder.unknown == "other"
    row = loaded.encode({"age": 30, "seatbelt": "harness", "occupant_role": "driver"})
    assert row[0, loaded.encoder.columns.index("seatbelt=__other__")] == 1.0
