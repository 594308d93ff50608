"""Platform settings: local defaults, GCP from the environment, every missing or bad setting named."""

from __future__ import annotations

import pytest

from hmlcore.app import HmlApp
from hmlcore.bigquery import BigQueryWarehouse
from hmlcore.config import PlatformSettings
from hmlcore.errors import ConfigError
from hmlcore.warehouse import DuckDBWarehouse

GCP = {"GCP_PROJECT": "crash-project", "HML_GCS_BUCKET": "crash-bucket"}


def test_local_defaults_live_under_hml_home():
    settings = PlatformSettings.from_env("local", environ={"HML_HOME": "/srv/hml"})
    assert (settings.lake_url, settings.warehouse_url) == ("/srv/hml/lake", "/srv/hml/warehouse.duckdb")
    assert settings.gcp_project is None


def test_gcp_settings_come_from_the_environment():
    settings = PlatformSettings.from_env("gcp", environ={**GCP, "HML_BQ_DATASET": "crashes", "GCP_LOCATION": "europe-west1"})
    assert settings.platform == "GCP"
    assert settings.lake_url == "gs://crash-bucket/hml"
    assert settings.warehouse_url == "bigquery://crash-project/crashes"
    assert (settings.gcp_project, settings.gcp_location, settings.gcs_bucket, settings.bq_dataset) == (
        "crash-project",
        "europe-west1",
        "crash-bucket",
        "crashes",
    )


def test_gcp_defaults_dataset_and_location():
    settings = PlatformSettings.from_env("GCP", environ=GCP)
    assert (settings.bq_dataset, settings.gcp_location) == ("hml", "US")


def test_every_missing_gcp_setting_is_named_at_once():
    with pytest.raises(ConfigError) as info:
        PlatformSettings.from_env("GCP", environ={})
    assert "GCP_PROJECT (the GCP project id) is not set" in str(info.value)
    assert "HML_GCS_BUCKET (the GCS bucket of the lake) is not set" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GCP_PROJECT", "My_Project"),
        ("HML_GCS_BUCKET", "gs://crash-bucket"),
        ("HML_BQ_DATASET", "crash-data"),
        ("GCP_LOCATION", "europe west"),
    ],
)
def test_a_malformed_gcp_setting_is_named_with_its_value(name, value):
    with pytest.raises(ConfigError, match=f"{name}='{value}' is not valid"):
        PlatformSettings.from_env("GCP", environ={**GCP, name: value})


def test_a_lake_url_override_replaces_the_bucket():
    settings = PlatformSettings.from_env("GCP", environ={"GCP_PROJECT": "crash-project", "HML_LAKE_URL": "gs://other/prefix"})
    assert settings.lake_url == "gs://other/prefix"


def test_an_unknown_platform_is_refused():
    with pytest.raises(ConfigError, match="unknown platform 'aws': use one of local, GCP"):
        PlatformSettings.from_env("aws", environ={})


def test_the_app_opens_the_local_engines(tmp_path, monkeypatch):
    monkeypatch.setenv("HML_HOME", str(tmp_path))
    for name in ("HML_LAKE_URL", "HML_WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    app = HmlApp("car-crashes")
    assert app.lake.url == str(tmp_path / "lake")
    assert isinstance(app.warehouse, DuckDBWarehouse)
    app.warehouse.close()


def test_the_app_on_gcp_opens_gcs_and_bigquery(monkeypatch):
    for name in ("HML_LAKE_URL", "HML_WAREHOUSE_URL", "HML_BQ_DATASET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GCP_PROJECT", "crash-project")
    monkeypatch.setenv("HML_GCS_BUCKET", "crash-bucket")
    monkeypatch.setenv("GCP_LOCATION", "EU")
    app = HmlApp("car-crashes", platform="GCP")
    assert app.lake.url == "gs://crash-bucket/hml"
    assert app.lake.storage_options == {"project": "crash-project"}
    warehouse = app.warehouse
    assert isinstance(warehouse, BigQueryWarehouse)
    assert (warehouse.project, warehouse.dataset, warehouse.location) == ("crash-project", "hml", "EU")


def test_the_app_on_gcp_without_settings_says_which(monkeypatch):
    for name in ("GCP_PROJECT", "HML_GCS_BUCKET", "HML_LAKE_URL", "HML_WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="GCP_PROJECT .* is not set"):
        _ = HmlApp("car-crashes", platform="GCP").lake
