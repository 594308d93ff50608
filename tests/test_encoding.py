"""The feature encoder: one code path for frames, batches and single records; explicit policies."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hmlcore.errors import FeatureError
from hmlcore.model.encoding import OTHER, FeatureEncoder, to_columns

TRAIN = pd.DataFrame(
    {
        "age": [30, 40, 50, 60],
        "speed": [10.5, 20.0, None, 40.0],
        "sex": ["m", "f", "f", None],
        "band": [1, 2, 2, 3],
    }
)


def fitted(**policies: str) -> FeatureEncoder:
    return FeatureEncoder(["age", "speed"], ["sex", "band"], **policies).fit(TRAIN)


def test_columns_are_numeric_then_sorted_categories_and_survive_a_round_trip():
    encoder = fitted()
    assert encoder.columns == ["age", "speed", "sex=f", "sex=m", "band=1", "band=2", "band=3"]
    again = FeatureEncoder.from_dict(encoder.to_dict())
    assert again.columns == encoder.columns
    np.testing.assert_array_equal(again.transform(TRAIN), encoder.transform(TRAIN))


def test_a_saved_column_order_that_differs_is_refused():
    saved = fitted().to_dict()
    saved["columns"] = list(reversed(saved["columns"]))
    with pytest.raises(ValueError, match="column order"):
        FeatureEncoder.from_dict(saved)


def test_frame_batch_and_single_record_encode_identically():
    encoder = fitted()
    records = TRAIN.astype(object).where(TRAIN.notna(), None).to_dict("records")
    frame = encoder.transform(TRAIN)
    batch = encoder.transform(records)
    singles = np.vstack([encoder.transform(record) for record in records])
    columns = encoder.transform({k: list(v) for k, v in TRAIN.items()})
    np.testing.assert_array_equal(frame, batch)
    np.testing.assert_array_equal(frame, singles)
    np.testing.assert_array_equal(frame, columns)
    # row 0: age 30, speed 10.5, sex m, band 1
    assert frame[0].tolist() == [30.0, 10.5, 0.0, 1.0, 1.0, 0.0, 0.0]


def test_numbers_and_their_text_read_as_the_same_category():
    encoder = fitted()
    as_text = encoder.transform({"age": 1, "speed": 2, "sex": "f", "band": "2"})
    as_float = encoder.transform({"age": 1, "speed": 2, "sex": "f", "band": 2.0})
    np.testing.assert_array_equal(as_text, as_float)
    assert as_text[0, encoder.columns.index("band=2")] == 1.0


def test_unknown_category_error_names_the_feature_and_the_value():
    with pytest.raises(FeatureError, match=r"sex: unknown category 'x' \(known: f, m\)") as info:
        fitted().transform({"age": 1, "speed": 2, "sex": "x", "band": 1})
    assert info.value.details[0]["feature"] == "sex"
    assert info.value.details[0]["value"] == "x"


def test_unknown_category_ignore_encodes_all_zeros():
    row = fitted(unknown="ignore").transform({"age": 1, "speed": 2, "sex": "x", "band": 1})
    assert row[0, 2:4].tolist() == [0.0, 0.0]


def test_unknown_category_other_sets_the_other_bucket_only():
    encoder = fitted(unknown="other")
    assert encoder.columns[2:5] == ["sex=f", "sex=m", f"sex={OTHER}"]
    row = encoder.transform({"age": 1, "speed": 2, "sex": "x", "band": 1})
    assert row[0, 2:5].tolist() == [0.0, 0.0, 1.0]
    known = encoder.transform({"age": 1, "speed": 2, "sex": "m", "band": 1})
    assert known[0, 2:5].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("missing", [None, float("nan"), pd.NA])
def test_missing_category_is_all_zeros_by_default(missing):
    row = fitted().transform({"age": 1, "speed": 2, "sex": missing, "band": 1})
    assert row[0, 2:4].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_category_is_missing_in_records_and_frames_alike(blank):
    """A query string (``?sex=``) and a CSV cell say "missing" with an empty value, for categories as for numbers."""
    record = {"age": 1, "speed": "", "sex": blank, "band": 1}
    for policies, expected in (({}, [0.0, 0.0]), ({"missing": "other", "unknown": "error"}, [0.0, 0.0, 1.0])):
        encoder = fitted(**policies)
        row = encoder.transform(record)
        width = len(expected)
        assert row[0, 2 : 2 + width].tolist() == expected and math.isnan(row[0, 1])
        np.testing.assert_array_equal(encoder.transform(pd.DataFrame([record])), row)
    with pytest.raises(FeatureError, match="a value is required"):
        fitted(missing="error").transform(record)
    assert FeatureEncoder([], ["sex"]).fit(pd.DataFrame({"sex": ["m", blank, "f"]})).categories == {"sex": ["f", "m"]}


def test_missing_category_error_names_the_feature_and_row():
    records = [{"age": 1, "speed": 2, "sex": "f", "band": 1}, {"age": 1, "speed": 2, "sex": None, "band": 1}]
    with pytest.raises(FeatureError, match="row 1: sex: a value is required"):
        fitted(missing="error").transform(records)
    columns = {f: [r[f] for r in records] for f in records[0]}
    with pytest.raises(FeatureError, match="sex: missing value in row 1"):
        fitted(missing="error").transform(columns)


def test_missing_category_other_goes_to_the_other_bucket():
    row = fitted(missing="other").transform({"age": 1, "speed": 2, "sex": None, "band": 1})
    assert row[0, 2:5].tolist() == [0.0, 0.0, 1.0]


def test_missing_numeric_is_nan_and_numeric_text_is_a_number():
    row = fitted().transform({"age": "41", "speed": None, "sex": "f", "band": 1})
    assert row[0, 0] == 41.0 and math.isnan(row[0, 1])


@pytest.mark.parametrize("bad", ["old", True, [1]])
def test_a_value_that_is_not_a_number_is_named(bad):
    with pytest.raises(FeatureError, match=r"age: expected a number, got") as info:
        fitted().transform({"age": bad, "speed": 1, "sex": "f", "band": 1})
    assert info.value.details[0]["feature"] == "age"


def test_nullable_integer_columns_from_a_warehouse_encode_like_floats():
    frame = TRAIN.assign(age=pd.array([30, None, 50, 60], dtype="Int64"), band=pd.array([1, 2, None, 3], dtype="Int64"))
    out = fitted().transform(frame)
    assert math.isnan(out[1, 0])
    assert out[2, 4:7].tolist() == [0.0, 0.0, 0.0]
    assert out[3, 4:7].tolist() == [0.0, 0.0, 1.0]


def test_every_missing_feature_is_named():
    with pytest.raises(FeatureError, match="missing feature sex; missing feature band") as info:
        fitted().transform([{"age": 1, "speed": 2}])
    assert {d["feature"] for d in info.value.details} == {"sex", "band"}
    with pytest.raises(FeatureError, match="missing feature: band"):
        fitted().transform(TRAIN.drop(columns=["band"]))


def test_records_that_are_not_objects_are_refused():
    with pytest.raises(FeatureError, match="record 1 is a int"):
        to_columns([{"a": 1}, 5], ["a"])


@pytest.mark.parametrize("option", [{"unknown": "drop"}, {"missing": "zero"}])
def test_an_unknown_policy_is_refused(option):
    with pytest.raises(ValueError, match="is not a policy"):
        FeatureEncoder(["a"], ["b"], **option)


def test_categories_are_learnt_sorted_without_missing_values():
    encoder = fitted()
    assert encoder.categories == {"sex": ["f", "m"], "band": ["1", "2", "3"]}


def test_frame_and_record_paths_read_values_by_one_rule():
    enc = FeatureEncoder(["x"], ["c"], categories={"c": ["3"]}, unknown="error")
    frame = enc.transform({"x": [10**400, np.float32(2.0)], "c": [np.float32(3.0), 3]})
    records = enc.transform([{"x": 2.0, "c": np.float32(3.0)}, {"x": np.int64(2), "c": "3"}])
    assert math.isinf(frame[0, 0]) and frame[1, 0] == 2.0  # a huge integer reads as infinite, not a crash
    assert frame[:, 1].tolist() == [1.0, 1.0] and records[:, 1].tolist() == [1.0, 1.0]
