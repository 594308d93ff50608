import pandas as pd

from {{ cookiecutter.package_name }} import shared


def test_shipped_data_has_every_feature_and_the_target():
    data = pd.read_csv(shared.DATA_FILE)
    assert set(shared.FEATURES_NUMERIC + shared.FEATURES_CATEGORICAL + [shared.TARGET]) <= set(data.columns)
    assert set(data[shared.TARGET].unique()) == {0, 1}
    assert len(data) > 20_000


def test_container_declares_features_and_target():
    container = shared.model_container()
    assert container.features == shared.FEATURES_NUMERIC + shared.FEATURES_CATEGORICAL
    assert container.target == shared.TARGET
