"""Drift figures against the training distributions: PSI, out of range, unseen, missing, windows and thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hmlcore.errors import ConfigError
from hmlcore.model.distributions import describe_distributions
from hmlcore.serving.drift import DriftProfile, DriftThresholds
from hmlcore.serving.drift_window import DriftWindow, read_windows, window_files, window_path
from hmlcore.serving.metrics import mark_worker_dead


def profile_of(train: pd.DataFrame, numeric: list[str], categorical: list[str]) -> DriftProfile:
    return DriftProfile.from_distributions(describe_distributions(train, numeric, categorical), numeric, categorical)


def reference_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e, a = np.clip(expected, 1e-4, None), np.clip(actual, 1e-4, None)
    return float(((a - e) * np.log(a / e)).sum())


@pytest.fixture
def train() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"x": rng.normal(0, 1, 5000), "c": rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])})


def test_numeric_psi_and_out_of_range_match_a_direct_computation(train: pd.DataFrame):
    profile = profile_of(train, ["x"], [])
    now = pd.DataFrame({"x": np.random.default_rng(1).normal(0.7, 1.3, 2000)})
    drift = profile.evaluate(profile.counts(profile.codes_from_frame(now))).features["x"]
    edges = np.histogram_bin_edges(train["x"], bins=10)
    expected = np.histogram(train["x"], bins=edges)[0] / len(train)
    actual = np.histogram(np.clip(now["x"], edges[0], edges[-1]), bins=edges)[0] / len(now)
    assert drift.psi == pytest.approx(reference_psi(expected, actual), rel=1e-6)
    outside = ((now["x"] < train["x"].min()) | (now["x"] > train["x"].max())).mean()
    assert outside > 0 and drift.out_of_range == pytest.approx(outside)
    assert drift.status == "alert"


def test_the_training_data_itself_has_no_drift(train: pd.DataFrame):
    profile = profile_of(train, ["x"], ["c"])
    report = profile.evaluate(profile.counts(profile.codes_from_frame(train)))
    assert report.status == "ok"
    assert all(f.psi == pytest.approx(0, abs=1e-9) for f in report.features.values())
    assert report.features["x"].out_of_range == 0 and report.features["c"].unseen == 0


def test_range_bounds_are_inside_even_after_float32_encoding():
    train = pd.DataFrame({"x": [0.1, 0.2, 0.3, 0.7]})
    profile = profile_of(train, ["x"], [])
    served = np.array([[0.1], [0.7]], dtype=np.float32)  # the encoded matrix is float32: 0.7 becomes 0.699999988
    codes = profile.codes_from_request(served, [{}, {}], {})
    drift = profile.evaluate(profile.counts(codes), thresholds=DriftThresholds(min_rows=1)).features["x"]
    assert drift.out_of_range == 0
    assert drift.actual[1] == 0.5 and drift.actual[-2] == 0.5  # first and last bin, nothing outside


def test_missing_values_are_counted_apart_from_the_distribution(train: pd.DataFrame):
    profile = profile_of(train, ["x"], ["c"])
    now = train.head(1000).copy()
    now.loc[now.index[:250], ["x", "c"]] = np.nan
    report = profile.evaluate(profile.counts(profile.codes_from_frame(now)))
    for feature in ("x", "c"):
        assert report.features[feature].missing == 0.25 and report.features[feature].training_missing == 0
        assert report.features[feature].status == "ok"


def test_categorical_unseen_share_and_psi_over_known_categories(train: pd.DataFrame):
    profile = profile_of(train, [], ["c"])
    now = pd.DataFrame({"c": ["a"] * 300 + ["b"] * 300 + ["z"] * 400})
    drift = profile.evaluate(profile.counts(profile.codes_from_frame(now))).features["c"]
    assert drift.unseen == pytest.approx(0.4)
    trained = train["c"].value_counts(normalize=True).reindex(["a", "b", "c"]).to_numpy()
    assert drift.psi == pytest.approx(reference_psi(trained, np.array([0.5, 0.5, 0.0])), rel=1e-6)
    assert drift.labels == ["a", "b", "c", "(unseen)"] and drift.actual == pytest.approx([0.3, 0.3, 0.0, 0.4])
    assert any("unseen" in reason and "alert" in reason for reason in drift.reasons)


def test_categories_compare_as_the_encoder_writes_them():
    train = pd.DataFrame({"code": ["1", "2", "true"] * 50})
    profile = profile_of(train, [], ["code"])
    codes = profile.codes_from_request(np.zeros((3, 0), dtype=np.float32), [{"code": 1}, {"code": 2.0}, {"code": True}], {})
    drift = profile.evaluate(profile.counts(codes), thresholds=DriftThresholds(min_rows=1)).features["code"]
    assert drift.unseen == 0


def test_a_constant_training_feature_flags_any_other_value():
    profile = profile_of(pd.DataFrame({"k": [3.0] * 100}), ["k"], [])
    same = profile.evaluate(profile.counts(profile.codes_from_frame(pd.DataFrame({"k": [3.0] * 200}))))
    moved = profile.evaluate(profile.counts(profile.codes_from_frame(pd.DataFrame({"k": [3.0] * 100 + [4.0] * 100}))))
    assert same.status == "ok" and same.features["k"].out_of_range == 0
    assert moved.features["k"].out_of_range == 0.5 and moved.status == "alert"


def test_the_window_keeps_only_the_latest_rows(train: pd.DataFrame):
    profile = profile_of(train, ["x"], ["c"])
    window = DriftWindow(profile, size=300)
    rows = profile.codes_from_frame(train.head(1000))
    for start in range(0, 1000, 70):  # batches that wrap around the ring at odd places
        window.add(rows[start : start + 70])
    assert window.rows == 300
    np.testing.assert_array_equal(window.counts(), profile.counts(rows[-300:]))
    window.add(rows[:500])  # a batch larger than the window keeps its last rows
    np.testing.assert_array_equal(window.counts(), profile.counts(rows[200:500]))


def test_window_files_of_several_processes_add_up(train: pd.DataFrame, tmp_path: Path):
    profile = profile_of(train, ["x"], ["c"])
    rows = profile.codes_from_frame(train.head(900))
    first = DriftWindow(profile, size=500, path=str(tmp_path / "a.bin"))
    second = DriftWindow(profile, size=500, path=str(tmp_path / "b.bin"))
    first.add(rows[:400])
    second.add(rows[400:900])
    other_model = profile_of(train.assign(x=train["x"] * 10), ["x"], ["c"])
    DriftWindow(other_model, size=50, path=str(tmp_path / "other.bin")).add(other_model.codes_from_frame(train.head(50)))
    (tmp_path / "garbage.bin").write_bytes(b"not a window")
    paths = [str(p) for p in sorted(tmp_path.iterdir())]
    counts, read = read_windows(paths, profile)
    assert read == 2
    np.testing.assert_array_equal(counts, profile.counts(rows))
    second.close()
    assert not (tmp_path / "b.bin").exists()
    assert read_windows([str(p) for p in tmp_path.iterdir()], profile)[1] == 1


def test_each_worker_window_file_is_found_by_its_pid_and_dropped_when_the_worker_dies(train: pd.DataFrame, tmp_path: Path):
    profile = profile_of(train, ["x"], ["c"])
    for pid in (101, 202):
        DriftWindow(profile, size=10, path=window_path(str(tmp_path), pid)).add(profile.codes_from_frame(train.head(3)))
    (tmp_path / "hml-drift-notapid.bin").write_bytes(b"")
    assert window_files(str(tmp_path)) == {101: window_path(str(tmp_path), 101), 202: window_path(str(tmp_path), 202)}
    mark_worker_dead(101, str(tmp_path))
    assert list(window_files(str(tmp_path))) == [202]


def test_a_profile_needs_every_feature_in_the_distributions(train: pd.DataFrame):
    with pytest.raises(ConfigError, match="lack feature.*y"):
        DriftProfile.from_distributions(describe_distributions(train, ["x"], []), ["x", "y"], [])
    with pytest.raises(ConfigError, match="lacks feature column.*c"):
        profile_of(train, ["x"], ["c"]).codes_from_frame(train[["x"]])


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ({"psi": (0.3, 0.1)}, r"psi must be a \(warn, alert\) pair.*\(0.3, 0.1\)"),
        ({"unseen": 0.1}, "unseen must be a.*got 0.1"),
        ({"psii": (0.1, 0.2)}, "unknown drift threshold.*'psii'"),
        ({"min_rows": 0}, "min_rows must be a whole number >= 1, got 0"),
        ({"features": {"age": {"range": (0, 1)}}}, "feature 'age'.*range"),
        ({"features": {"age": {"psi": ("a", "b")}}}, r"age.psi must be.*\('a', 'b'\)"),
        ("strict", "must be a dict, got str"),
    ],
    ids=["warn-above-alert", "not-a-pair", "unknown-key", "min-rows", "unknown-feature-check", "feature-pair", "not-a-dict"],
)
def test_bad_thresholds_are_refused_naming_the_value(thresholds: object, message: str):
    with pytest.raises(ConfigError, match=message):
        DriftThresholds.from_mapping(thresholds)  # type: ignore[arg-type]


def test_per_feature_thresholds_override_the_defaults():
    thresholds = DriftThresholds.from_mapping({"psi": [0.2, 0.5], "features": {"age": {"psi": [1, 2]}}})
    assert thresholds.for_feature("age")["psi"] == (1.0, 2.0)
    assert thresholds.for_feature("speed")["psi"] == (0.2, 0.5)
    assert thresholds.for_feature("speed")["unseen"] == DriftThresholds().unseen


def test_served_rows_get_the_same_codes_whichever_way_they_are_read(train: pd.DataFrame):
    from hmlcore.model.container import ModelContainer

    container = ModelContainer("m", "p", ["x"], ["c"], "y", unknown_category="ignore").analyze_distributions(train)
    profile = DriftProfile.from_container(container)
    rng = np.random.default_rng(5)
    now = pd.DataFrame({"x": rng.normal(0, 3, 400), "c": rng.choice(["a", "b", "c", "zz"], 400)}).astype(object)
    now.loc[now.index[::7], "x"] = None
    now.loc[now.index[::11], "c"] = None
    now.loc[now.index[0], "x"] = float(train["x"].max())  # the bounds of the training range
    now.loc[now.index[1], "x"] = float(train["x"].min())
    records = now.to_dict("records")
    features = container.encode(records)
    expected = profile.codes_from_frame(now)
    by_row = np.array([row for i in range(len(records)) for row in profile.codes_from_request(features[i : i + 1], records[i : i + 1], {})])
    np.testing.assert_array_equal(by_row, expected)
    np.testing.assert_array_equal(profile.codes_from_request(features, records, {}), expected)
    one_hot = profile.codes_from_request(features, records, {}, categories=container.encoder.categories)
    np.testing.assert_array_equal(one_hot, expected)
    drift = profile.evaluate(profile.counts(expected)).features
    assert drift["c"].unseen > 0.15 and drift["c"].missing > 0.05 and drift["x"].missing > 0.1
