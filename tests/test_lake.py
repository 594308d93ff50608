"""The lake: atomic writes, clear errors, and the gs:// path for real against a local GCS emulator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hmlcore.errors import ConfigError, ModelLoadError, StorageError
from hmlcore.storage.lake import Lake
from tests.gcs import gcs_emulator


@pytest.fixture(scope="module")
def gcs():
    with gcs_emulator() as emulator:
        yield emulator


def test_local_write_is_atomic_and_leaves_no_temporary_file(tmp_path):
    lake = Lake(str(tmp_path / "lake"))
    uri = lake.write_bytes("models/a/b.bin", b"one")
    lake.write_bytes("models/a/b.bin", b"two")
    assert Path(uri).read_bytes() == b"two"
    assert sorted(p.name for p in Path(uri).parent.iterdir()) == ["b.bin"]
    assert lake.read_bytes("models/a/b.bin") == lake.read_bytes(uri) == b"two"


def test_file_urls_and_relative_folders_resolve_to_the_same_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Lake("file://" + str(tmp_path / "x")).url == Lake("x").url == str(tmp_path / "x")


def test_reading_what_is_not_there_is_file_not_found(tmp_path):
    lake = Lake(str(tmp_path))
    assert not lake.exists("nope")
    with pytest.raises(FileNotFoundError):
        lake.read_bytes("nope")
    assert lake.delete("nope") is False


def test_a_lake_that_cannot_be_written_names_the_url(tmp_path):
    (tmp_path / "blocked").write_text("a file")
    lake = Lake(str(tmp_path / "blocked"))
    with pytest.raises(StorageError, match=f"cannot write {tmp_path}/blocked/a.bin"):
        lake.write_bytes("a.bin", b"x")


@pytest.mark.parametrize("url", ["", "   ", None])
def test_an_empty_lake_url_is_refused(url):
    with pytest.raises(ConfigError, match="lake URL must be a non-empty string"):
        Lake(url)


def test_an_unknown_protocol_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot open lake 'nosuchfs://x'"):
        Lake("nosuchfs://x").write_bytes("a", b"b")


@pytest.mark.slow
@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_object_store_round_trip(store, request):
    """The lake on SeaweedFS (s3://) and on the GCS emulator (gs://): write, exists, read, a missing file, delete."""
    if store == "s3":
        server = request.getfixturevalue("s3_server")
        lake = Lake(server.fresh_prefix() + "/", storage_options=server.storage_options())
        scheme = "s3://mlpipeline/"
    else:
        lake = Lake(request.getfixturevalue("gcs").fresh_prefix() + "/")
        scheme = "gs://"
    uri = lake.write_bytes("models/m.json", b'{"a": 1}')
    assert uri == f"{lake.url}/models/m.json" and uri.startswith(scheme)
    assert lake.exists("models/m.json") and not lake.exists("models/other.json")
    assert json.loads(lake.read_bytes(uri)) == {"a": 1}
    with pytest.raises(FileNotFoundError):
        lake.read_bytes("models/other.json")
    assert lake.delete("models/m.json") is True
    assert not lake.exists("models/m.json")


@pytest.mark.slow
def test_s3_with_wrong_credentials_is_refused_in_one_line(s3_server):
    options = {**s3_server.storage_options(), "key": "nobody", "secret": "not-the-secret"}
    lake = Lake(s3_server.fresh_prefix(), storage_options=options)
    with pytest.raises(StorageError, match=r"^cannot write s3://mlpipeline/\S+/a.bin: PermissionError: \S+"):
        lake.write_bytes("a.bin", b"x")


@pytest.mark.slow
def test_s3_platform_settings_reach_the_store(s3_server, monkeypatch):
    """The app's lake on the s3 platform: bucket, prefix and endpoint from settings, keys from AWS_* variables."""
    import s3fs

    from hmlcore.app import HmlApp

    env = s3_server.env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = HmlApp("s3-app", platform="s3")
    assert app.lake.url == f"s3://mlpipeline/{env['HML_S3_PREFIX']}"
    uri = app.lake.write_bytes("x/y.txt", b"shared")
    assert Lake(app.settings.lake_url, storage_options=s3_server.storage_options()).read_bytes(uri) == b"shared"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    s3fs.S3FileSystem.clear_instance_cache()  # a new process, as a pod with the wrong secret would be
    with pytest.raises(StorageError, match="cannot write s3://"):
        HmlApp("s3-app", platform="s3").lake.write_bytes("x/z.txt", b"refused")


def test_credentials_in_a_lake_url_are_masked():
    with pytest.raises(ConfigError) as caught:
        Lake("nosuchfs://reader:hunter2@store.example.com/lake?token=abc123").write_bytes("a", b"b")
    assert "hunter2" not in str(caught.value) and "abc123" not in str(caught.value)
    assert "nosuchfs://reader:***@store.example.com/lake?token=***" in str(caught.value)


def test_gcs_bucket_that_does_not_exist_cannot_be_written(gcs):
    with pytest.raises(StorageError, match="cannot write gs://no-such-bucket-hml/x/a.bin"):
        Lake("gs://no-such-bucket-hml/x").write_bytes("a.bin", b"x")


def test_a_local_lake_reads_a_gs_url(gcs, tmp_path):
    remote = Lake(gcs.fresh_prefix()).write_bytes("a.bin", b"from gcs")
    assert Lake(str(tmp_path)).read_bytes(remote) == b"from gcs"


def test_model_publish_and_verified_load_through_gcs(gcs, tmp_path):
    from tests.test_model import container, frame, trained

    prefix = gcs.fresh_prefix()
    c = trained(prefix)
    uri = c.publish(run_id="run-9", git_commit="cafe")
    assert uri == f"{prefix}/models/car-crashes/cafe/run-9/crashed.reference.json"
    loaded = container(prefix).load()
    df = frame(seed=3)
    np.testing.assert_allclose(loaded.predict_proba(loaded.encode(df)), c.predict_proba(c.encode(df)), rtol=1e-6)

    lake = Lake(prefix)
    model_uri = json.loads(lake.read_bytes(uri))["artifacts"]["model"]["uri"]
    lake.write_bytes(model_uri, b"not the model")
    with pytest.raises(ModelLoadError, match=f"artifact {model_uri} fails verification"):
        container(prefix).load(uri)
