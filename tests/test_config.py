"""Platform settings: local defaults, GCP from the environment, every missing or bad setting named."""

from __future__ import annotations

import pytest

from hmlcore.app import HmlApp
from hmlcore.errors import ConfigError
from hmlcore.storage.bigquery import BigQueryWarehouse
from hmlcore.storage.config import PlatformSettings, check_cluster_platform, check_env_name
from hmlcore.storage.warehouse import DuckDBWarehouse

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
    with pytest.raises(ConfigError, match="unknown platform 'aws': use one of local, s3, GCP"):
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


def test_s3_settings_come_from_the_environment():
    env = {"HML_S3_BUCKET": "mlpipeline", "HML_S3_ENDPOINT": "http://seaweedfs.kubeflow:9000/", "HML_S3_PREFIX": "crashes/v1"}
    settings = PlatformSettings.from_env("s3", environ=env)
    assert settings.platform == "s3"
    assert settings.lake_url == "s3://mlpipeline/crashes/v1"
    assert settings.warehouse_url == "s3://mlpipeline/crashes/v1/warehouse"
    assert settings.storage_options == {"client_kwargs": {"endpoint_url": "http://seaweedfs.kubeflow:9000"}}
    aws = PlatformSettings.from_env("S3", environ={"HML_S3_BUCKET": "my-bucket"})
    assert (aws.lake_url, aws.storage_options) == ("s3://my-bucket/hml", {})  # no endpoint: AWS itself


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, r"^platform s3: HML_S3_BUCKET \(the S3 bucket of the lake and the warehouse\) is not set$"),
        ({"HML_S3_BUCKET": "Bad_Bucket"}, r"HML_S3_BUCKET='Bad_Bucket' is not valid"),
        (
            {"HML_S3_BUCKET": "b-1", "HML_S3_ENDPOINT": "seaweedfs:9000"},
            r"HML_S3_ENDPOINT='seaweedfs:9000' is not valid: a URL like http://",
        ),
        ({"HML_S3_BUCKET": "b-1", "HML_S3_PREFIX": "../up"}, r"HML_S3_PREFIX='../up' is not valid"),
    ],
    ids=["missing-bucket", "bad-bucket", "endpoint-without-scheme", "prefix"],
)
def test_a_missing_or_malformed_s3_setting_is_named(env, message):
    with pytest.raises(ConfigError, match=message):
        PlatformSettings.from_env("s3", environ=env)


@pytest.mark.parametrize("platform", [None, "local", "LOCAL"])
def test_a_pod_local_platform_is_refused_for_a_cluster_with_what_to_set(platform):
    with pytest.raises(
        ConfigError, match=r"pipeline p would run on the pod-local platform 'local'.*cluster_platform='s3'.*--allow-pod-local"
    ):
        check_cluster_platform(platform, what="pipeline p")
    check_cluster_platform(platform, what="pipeline p", allow_pod_local=True)  # a single node sharing HML_HOME
    check_cluster_platform("s3", what="pipeline p")
    check_cluster_platform("GCP", what="pipeline p")


def test_an_unknown_cluster_platform_is_refused():
    with pytest.raises(ConfigError, match=r"unknown cluster_platform 'minio': use one of local, s3, GCP"):
        HmlApp("car-crashes", cluster_platform="minio")
    assert HmlApp("car-crashes", cluster_platform="S3").cluster_platform == "s3"


@pytest.mark.parametrize("name", ["A.B", "my-var", "1ST", "MY VAR", "", None])
def test_an_env_name_a_shell_cannot_export_is_refused_with_the_rule(name):
    with pytest.raises(ConfigError, match=r"invalid environment variable name .*: use letters, digits and '_', not starting with a digit"):
        check_env_name(name)


def test_a_shell_name_is_accepted():
    assert check_env_name("_HML_x9") == "_HML_x9"
