"""The split: seeded, stratified, reproducible from the seed and the data, never keyed on the target; by key or by time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hmlcore.errors import ConfigError
from hmlcore.model.split import SplitSpec, row_ids, validation_mask


def repeated(rows: int = 1300, seed: int = 0) -> pd.DataFrame:
    """A passenger list: three categorical features, so most rows are exact repeats of others."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "pclass": rng.choice(["1", "2", "3"], rows, p=[0.25, 0.2, 0.55]),
            "sex": rng.choice(["f", "m"], rows, p=[0.35, 0.65]),
            "age": rng.choice(["child", "adult"], rows, p=[0.1, 0.9]),
        }
    )
    odds = -1.2 + 2.4 * (frame["sex"] == "f") + 1.0 * (frame["pclass"] == "1") - 0.7 * (frame["pclass"] == "3") + (frame["age"] == "child")
    frame["survived"] = (rng.random(rows) < 1 / (1 + np.exp(-odds))).astype(int)
    return frame


def split(frame: pd.DataFrame, **spec) -> np.ndarray:
    ids = row_ids(frame, list(frame.columns))
    return validation_mask(frame, SplitSpec(**spec), ids=ids, stratify=frame["survived"] if "survived" in frame else None)


def test_repeated_rows_split_like_a_random_split_with_each_class_share_kept():
    frame = repeated()
    mask = split(frame)
    assert mask.sum() == pytest.approx(0.2 * len(frame), abs=2)
    shares = frame["survived"][mask].mean(), frame["survived"][~mask].mean()
    assert shares[0] == pytest.approx(shares[1], abs=0.01)
    # the bug this replaces: no validation row had its (features, target) anywhere in training
    seen = set(map(tuple, frame[~mask].to_numpy()))
    assert np.mean([tuple(row) in seen for row in frame[mask].to_numpy()]) > 0.9


def test_the_split_is_reproducible_from_the_seed_and_the_data_whatever_the_order():
    frame = repeated(400)
    ids = row_ids(frame, list(frame.columns))
    chosen = set(ids[split(frame)])
    shuffled = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)
    assert set(row_ids(shuffled, list(shuffled.columns))[split(shuffled)]) == chosen
    assert set(ids[split(frame, seed=8)]) != chosen


def test_a_row_keeps_its_identity_when_rows_are_added_and_numbers_are_read_as_floats():
    frame = repeated(300)
    ids = row_ids(frame, list(frame.columns))
    assert len(set(ids)) == len(frame)  # the k-th copy of the same values is a row of its own
    grown = pd.concat([frame, repeated(100, seed=5)], ignore_index=True)
    assert np.array_equal(row_ids(grown, list(grown.columns))[:300], ids)
    as_floats = frame.assign(survived=frame["survived"].astype(float))
    assert np.array_equal(row_ids(as_floats, list(frame.columns)), ids)


def test_a_key_keeps_each_group_on_one_side_and_time_holds_out_the_latest_rows():
    frame = repeated(600).assign(user=np.arange(600) // 6, day=np.arange(600) % 97)
    by_key = split(frame, key="user")
    assert frame.groupby("user")["user"].transform(lambda g: by_key[g.index].all() or not by_key[g.index].any()).all()
    assert by_key.sum() == pytest.approx(120, abs=6)
    by_time = split(frame, time="day")
    assert frame["day"][by_time].min() > frame["day"][~by_time].max()
    assert by_time.sum() == pytest.approx(120, abs=12)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"validation_share": 1.5}, "validation_share must be between 0 and 1, got 1.5"),
        ({"seed": -1}, "seed must be a whole number >= 0"),
        ({"key": "user", "time": "day"}, "not both"),
        ({"key": "nobody"}, "names column 'nobody', which the data lacks"),
    ],
)
def test_a_bad_split_is_one_clear_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        split(repeated(50), **spec)


def test_config_from_shared_py_refuses_unknown_keys_and_takes_overrides():
    assert SplitSpec.from_config({"validation_share": 0.2, "seed": 7, "key": None, "time": None}, seed=3).seed == 3
    with pytest.raises(ConfigError, match="unknown key"):
        SplitSpec.from_config({"share": 0.2})


@pytest.mark.parametrize("dtype", [object, "string"])
def test_a_text_is_the_same_identity_in_a_text_column_and_in_a_mixed_one_and_blanks_are_missing(dtype):
    texts = pd.DataFrame({"road": pd.Series(["1", "city", None, "", "  ", "\u2003", "b ", "1"], dtype=dtype)})
    mixed = pd.DataFrame({"road": pd.Series([1, "city", np.nan, None, None, None, "b ", 1.0], dtype=object)})  # not all text
    assert np.array_equal(row_ids(texts, ["road"]), row_ids(mixed, ["road"]))
    ids = row_ids(texts, ["road"])
    assert len(set(ids[[0, 1, 6]])) == 3 and ids[0] != ids[7]  # the second "1" is another copy: another row


@pytest.mark.parametrize("dtype", [object, "string", "str", "category"])
def test_a_rows_identity_never_changes_as_the_registry_keeps_it(dtype):
    # the registry keeps the identities a model trained on: a later version of hmlcore must compute the same
    # numbers, or an older model's training rows would count as unseen (values computed once and kept here)
    road = pd.Series(["city", None, " ", "b ", "city", "\u65e5\u672c"], dtype=dtype)
    frame = pd.DataFrame({"road": road, "speed": [30, 50, np.nan, 30, 30, 0.0]})
    kept = [5985069806550902753, 14920252333063470735, 3952556025028984039]
    kept += [13880825710008543372, 17399717773299705114, 10969937081141438289]
    assert row_ids(frame, ["road", "speed"]).tolist() == kept
