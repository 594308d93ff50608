"""What shared.py declares matches the data it names."""

import pandas as pd

from {{ cookiecutter.package_name }} import shared


def test_the_data_has_every_feature_and_the_target(data):
    assert set(shared.FEATURES_NUMERIC + shared.FEATURES_CATEGORICAL + [shared.TARGET]) <= set(data.columns)
    target = data[shared.TARGET].dropna()
{%- if cookiecutter.model_kind == "regression" %}
    assert pd.api.types.is_numeric_dtype(target) and target.nunique() > 1
{%- elif cookiecutter.model_kind == "binary" %}
    assert target.nunique() == 2
{%- else %}
    assert target.nunique() > 2
{%- endif %}


def test_the_numeric_features_are_numbers(data):
    for feature in shared.FEATURES_NUMERIC:
        assert pd.api.types.is_numeric_dtype(data[feature]), feature


def test_container_declares_kind_features_and_target():
    container = shared.model_container()
    assert container.features == shared.FEATURES_NUMERIC + shared.FEATURES_CATEGORICAL
    assert container.target == shared.TARGET
    assert container.kind == shared.MODEL_KIND
