"""Drift figures against the training distributions: PSI, out of range, unseen, missing, windows and thresholds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hmlcore.errors import ConfigError
from hmlcore.model.distributions import describe_distributions
from hmlcore.serving.drift import DriftProfile
from hmlcore.serving.drift_report import DriftThresholds
from hmlcore.serving.drift_window import DriftWindow
from hmlcore.serving.metrics import ServingMetrics, SettledFilesCollector, mark_worker_dead


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


def test_the_window_keeps_only_the_latest_rows_and_says_how_each_slot_changed(train: pd.DataFrame):
    profile = profile_of(train, ["x"], ["c"])
    window = DriftWindow(profile, size=300)
    rows = profile.codes_from_frame(train.head(1000))
    summed = np.zeros(profile.slots, dtype=np.int64)
    starts = [*range(0, 700, 70), *range(700, 800, 5), *range(800, 1000)]  # batches that wrap around the ring at odd places
    for start, end in zip(starts, [*starts[1:], 1000], strict=True):  # of 70 rows (numpy), 5 and 1 (plain Python)
        for slot, change in window.add(rows[start:end] if end - start > 1 else rows[start:end].tolist()):
            summed[slot] += change
    assert window.rows == 300
    np.testing.assert_array_equal(window.counts(), profile.counts(rows[-300:]))
    np.testing.assert_array_equal(summed, window.counts())
    for slot, change in window.add(rows[:500]):  # a batch larger than the window keeps its last rows
        summed[slot] += change
    np.testing.assert_array_equal(window.counts(), profile.counts(rows[200:500]))
    np.testing.assert_array_equal(summed, window.counts())


#: a worker: adds the rows in argv[2] (JSON codes) to a window of the profile in argv[1] and counts it as serving does
WORKER = """
import json, os, sys
from hmlcore.serving.drift import DriftProfile
from hmlcore.serving.drift_window import DriftWindow
from hmlcore.serving.metrics import ServingMetrics

profile = DriftProfile(json.loads(sys.argv[1]), ["x"], ["c"])
window = DriftWindow(profile, size=500)
metrics = ServingMetrics(model="m")
metrics.start_window()
metrics.observe_window(profile, "v1", window.add(json.loads(sys.argv[2])), window.rows)
print(os.getpid())
"""


def test_the_windows_of_several_workers_add_up_and_a_dead_worker_is_forgotten(train: pd.DataFrame, tmp_path: Path):
    distributions = describe_distributions(train, ["x"], ["c"])
    profile = DriftProfile.from_distributions(distributions, ["x"], ["c"])
    rows = profile.codes_from_frame(train.head(900))
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    pids = [
        int(
            subprocess.run(
                [sys.executable, "-c", WORKER, json.dumps(distributions), json.dumps(part.tolist())],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        )
        for part in (rows[:400], rows[400:900])
    ]

    def summed(version: str = "v1") -> tuple[np.ndarray, int]:
        return ServingMetrics(model="m").window_counts(profile, version, list(SettledFilesCollector(str(tmp_path)).collect()))

    counts, workers = summed()
    np.testing.assert_array_equal(counts, profile.counts(rows))
    assert workers == 2
    assert summed("v2")[0].sum() == 0  # another model version's windows are not mixed in
    mark_worker_dead(pids[1], str(tmp_path))
    counts, workers = summed()
    np.testing.assert_array_equal(counts, profile.counts(rows[:400]))
    assert workers == 1


def test_slots_are_labelled_by_feature_and_training_bin():
    train = pd.DataFrame({"x": [0.0, 1.0, 2.0, 4.0], "c": ["a", "b", "(unseen)", "a"]})
    profile = profile_of(train, ["x"], ["c"])
    assert len(profile.slot_labels) == profile.slots
    x = [label for feature, label in profile.slot_labels if feature == "x"]
    assert x[0] == "< 0" and x[1].startswith("0 to ") and x[-2:] == ["> 4", "(missing)"]
    c = [label for feature, label in profile.slot_labels if feature == "c"]
    assert c == ["#0", "#1", "#2", "#3", "#4"]  # a category named like a slot: the slots are numbered instead


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
