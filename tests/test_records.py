"""The record path (what the API encodes) gives the frame path's matrix (what training encodes), and refuses what it cannot encode."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from hmlcore.errors import FeatureError
from hmlcore.model._records import MAX_DETAILS, RecordEncoder
from hmlcore.model.encoding import UNKNOWN_POLICIES, FeatureEncoder

FRAME = pd.DataFrame(
    {
        "age": [20, 30, 40, 50],
        "weight": [60.5, 70.0, 80.25, 90.0],
        "colour": ["red", "blue", "red", "green"],
        "doors": [3, 5, 5, 3],  # a categorical feature whose categories are numbers
        "flag": [True, False, True, True],
    }
)
NUMERIC = ["age", "weight"]
CATEGORICAL = ["colour", "doors", "flag"]


def encoder(**policies: str) -> FeatureEncoder:
    return FeatureEncoder(NUMERIC, CATEGORICAL, **policies).fit(FRAME)


def random_record(rng: random.Random, *, unseen: bool) -> dict:
    numbers = [0, -3, 7.25, 1e6, None, "12", " 4.5 ", "", float("nan")]
    categories = {
        "colour": ["red", "blue", "green", None] + (["purple"] if unseen else []),
        "doors": [3, 5, "3", 5.0, None] + ([4] if unseen else []),
        "flag": [True, False, "true", None],
    }
    record = {f: rng.choice(numbers) for f in NUMERIC}
    record.update({f: rng.choice(values) for f, values in categories.items()})
    return record


POLICIES = [{"unknown": u} for u in UNKNOWN_POLICIES] + [{"unknown": "ignore", "missing": m} for m in ("ignore", "other")]


def columns_of(records: list[dict]) -> dict[str, list]:
    """The records as a dict of columns, which FeatureEncoder.transform encodes on its vectorised path."""
    return {f: [r[f] for r in records] for f in NUMERIC + CATEGORICAL}


@pytest.mark.parametrize("policies", POLICIES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_same_matrix_as_the_vectorised_path(policies: dict):
    enc = encoder(**policies)
    rng = random.Random(7)
    unseen = policies["unknown"] != "error"
    records = [random_record(rng, unseen=unseen) for _ in range(300)]
    fast = RecordEncoder(enc).encode(records)
    assert fast.dtype == np.float32 and fast.shape == (300, len(enc.columns))
    np.testing.assert_array_equal(fast, enc.transform(columns_of(records)))
    np.testing.assert_array_equal(enc.transform(records), fast)  # transform hands records to the record path
    for record in records[:20]:  # one row at a time too
        np.testing.assert_array_equal(enc.transform(record), enc.transform(columns_of([record])))


def test_defaults_fill_missing_features_only():
    records = [{"weight": 1, "doors": 3, "flag": False}, {"age": 1, "weight": 1, "colour": "red", "doors": 3, "flag": False}]
    matrix = RecordEncoder(encoder()).encode(records, defaults={"colour": "green", "age": 33})
    columns = encoder().columns
    assert matrix[0, columns.index("age")] == 33 and matrix[0, columns.index("colour=green")] == 1
    assert matrix[1, columns.index("age")] == 1 and matrix[1, columns.index("colour=red")] == 1


@pytest.mark.parametrize(
    ("record", "feature", "expected", "message"),
    [
        ({"age": "x"}, "age", "number", "expected a number, got 'x'"),
        ({"age": False}, "age", "number", "expected a number, got False"),
        ({"age": [1]}, "age", "number", "expected a number, got '[1]'"),
        ({"weight": float("inf")}, "weight", "number", "expected a finite number"),
        ({"weight": 10**5000}, "weight", "number", "expected a finite number"),
        ({"colour": ["red"]}, "colour", "string", "expected a string, got list"),
        ({"colour": {"red": 1}}, "colour", "string", "expected a string, got dict"),
        ({"colour": "purple"}, "colour", "string", "unknown category 'purple' (known: blue, green, red)"),
        ({"doors": 4}, "doors", "string", "unknown category '4'"),
    ],
)
def test_a_bad_value_names_the_feature_and_the_type_expected(record: dict, feature: str, expected: str, message: str):
    good = {"age": 1, "weight": 2, "colour": "red", "doors": 3, "flag": True}
    with pytest.raises(FeatureError) as caught:
        RecordEncoder(encoder()).encode([good, {**good, **record}])
    detail = caught.value.details[0]
    assert (detail["index"], detail["feature"], detail["expected"]) == (1, feature, expected)
    assert message in detail["message"] and f"row 1: {feature}" in str(caught.value)


def test_a_missing_feature_is_named():
    with pytest.raises(FeatureError, match="missing feature colour") as caught:
        RecordEncoder(encoder()).encode([{"age": 1, "weight": 2, "doors": 3, "flag": True}])
    assert caught.value.details == [{"index": 0, "feature": "colour", "message": "missing", "expected": "string"}]


def test_many_problems_are_cut_to_a_readable_few():
    with pytest.raises(FeatureError, match=r"\(and \d+ more\)") as caught:
        RecordEncoder(encoder()).encode([{"age": "x"}] * 1000)
    assert len(caught.value.details) == MAX_DETAILS
