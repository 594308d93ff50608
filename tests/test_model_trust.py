"""Signed references and the lake's border: what a model load refuses before it reads an artifact."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hmlcore.errors import ConfigError, ModelLoadError, UntrustedModelError
from hmlcore.model.signing import KEY_ENV, KEY_FILE_ENV
from hmlcore.storage.lake import Lake

from ._serving import container, publish_model

KEY = "a-test-signing-key-of-32-bytes-or-more"


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (KEY_ENV, KEY_FILE_ENV, "HML_MODEL_REFERENCE"):
        monkeypatch.delenv(name, raising=False)


def drop_artifacts(reference: str) -> None:
    """Remove every artifact a reference names: a load that reads one would fail with 'does not exist'."""
    for artifact in json.loads(Path(reference).read_text())["artifacts"].values():
        Path(artifact["uri"]).unlink()


def test_publish_signs_with_the_key_and_load_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    reference = publish_model(tmp_path)
    assert json.loads(Path(reference).read_text())["signature"]["algorithm"] == "hmac-sha256"
    assert container(tmp_path).load().version == "run-1"


def test_an_unsigned_reference_is_refused_before_any_artifact_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reference = publish_model(tmp_path)  # no key: unsigned
    drop_artifacts(reference)
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(UntrustedModelError, match="is not signed, but a signing key is configured"):
        container(tmp_path).load()


@pytest.mark.parametrize("change", ["other-key", "edited-after-signing"])
def test_a_wrongly_signed_reference_is_refused_before_any_artifact_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str):
    monkeypatch.setenv(KEY_ENV, "another-key-that-is-also-32-bytes-long" if change == "other-key" else KEY)
    reference = publish_model(tmp_path)
    if change == "edited-after-signing":
        ref = json.loads(Path(reference).read_text())
        ref["metrics"]["auc"] = 0.99
        Path(reference).write_text(json.dumps(ref))
    drop_artifacts(reference)
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(UntrustedModelError, match="has a wrong signature"):
        container(tmp_path).load()


def test_the_key_from_a_mounted_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    secret = tmp_path / "secret" / "signing-key"
    secret.parent.mkdir()
    secret.write_text(KEY + "\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(secret))
    publish_model(tmp_path / "lake")
    assert container(tmp_path / "lake").load().version == "run-1"
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(ConfigError, match="set one of them"):
        container(tmp_path / "lake").load()


@pytest.mark.parametrize(
    ("env", "message"),
    [({KEY_ENV: "short"}, "is 5 bytes; a signing key needs at least 32"), ({KEY_FILE_ENV: "/nonexistent/key"}, "cannot be read")],
)
def test_a_bad_key_setting_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        container(tmp_path).load()


class RecordingServer:
    """A local HTTP server that serves a valid reference and records every request: an off-lake URI's bait."""

    def __init__(self, reference: bytes) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(reference)))
                self.end_headers()
                self.wfile.write(reference)

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def bait(tmp_path: Path) -> Iterator[RecordingServer]:
    reference = publish_model(tmp_path / "elsewhere")
    server = RecordingServer(Path(reference).read_bytes())
    try:
        yield server
    finally:
        server.close()


def point(lake: Path, reference: str) -> None:
    pointer = lake / "models" / "demo" / "risk" / "current.json"
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(json.dumps({"reference": reference}))


def test_a_pointer_to_an_http_url_is_refused_without_fetching(tmp_path: Path, bait: RecordingServer):
    lake = tmp_path / "lake"
    point(lake, f"{bait.url}/crashed.reference.json")
    with pytest.raises(UntrustedModelError, match="lies outside the lake"):
        container(lake).load()
    with pytest.raises(UntrustedModelError, match="lies outside the lake"):
        container(lake).load(f"{bait.url}/crashed.reference.json")
    assert bait.requests == []


def test_an_artifact_outside_the_lake_is_refused_without_fetching(tmp_path: Path, bait: RecordingServer):
    lake = tmp_path / "lake"
    reference = publish_model(lake)
    ref = json.loads(Path(reference).read_text())
    ref["artifacts"]["model"]["uri"] = f"{bait.url}/risk.ubj"
    Path(reference).write_text(json.dumps(ref))
    with pytest.raises(UntrustedModelError, match="artifact of .* lies outside the lake"):
        container(lake).load()
    assert bait.requests == []


@pytest.mark.parametrize("where", ["parent-folder", "absolute-elsewhere"])
def test_a_pointer_leaving_the_lake_folder_is_refused(tmp_path: Path, where: str):
    lake = tmp_path / "lake"
    reference = publish_model(tmp_path / "elsewhere")  # a valid model: only where it lies is wrong
    assert container(tmp_path / "elsewhere").load().version == "run-1"
    point(lake, f"{lake}/../elsewhere/{Path(reference).relative_to(tmp_path / 'elsewhere')}" if where == "parent-folder" else reference)
    with pytest.raises(UntrustedModelError, match="lies outside the lake"):
        container(lake).load()


@pytest.mark.parametrize(
    ("root", "uri", "inside"),
    [
        ("s3://models/hml", "s3://models/hml/a/b.json", True),
        ("s3://models/hml", "a/b.json", True),
        ("s3://models/hml", "s3://other/hml/a.json", False),
        ("s3://models/hml", "s3://models/hml2/a.json", False),
        ("s3://models/hml", "s3://models/hml/../x/a.json", False),
        ("s3://models/hml", "gs://models/hml/a.json", False),
        ("s3://models/hml", "http://127.0.0.1/models/hml/a.json", False),
        ("s3://models/hml", "/etc/passwd", False),
        ("s3://models/hml", "s3://models/hml/a.json?versionId=1", False),
        ("gs://bucket", "gs://bucket/any/a.json", True),
        ("gs://bucket", "gs://bucket2/a.json", False),
        ("/srv/lake", "/srv/lake/models/a.json", True),
        ("/srv/lake", "file:///srv/lake/models/a.json", True),
        ("/srv/lake", "/srv/lake-2/a.json", False),
        ("/srv/lake", "../a.json", False),
        ("/srv/lake", "s3://srv/lake/a.json", False),
    ],
)
def test_lake_contains(root: str, uri: str, inside: bool):
    assert Lake(root).contains(uri) is inside


def test_a_symlink_out_of_a_local_lake_is_outside(tmp_path: Path):
    (tmp_path / "lake").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "lake" / "link").symlink_to(tmp_path / "outside")
    assert not Lake(str(tmp_path / "lake")).contains("link/a.json")


def test_a_pinned_reference_outside_the_lake_is_refused_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    reference = publish_model(tmp_path / "elsewhere")
    monkeypatch.setenv("HML_MODEL_REFERENCE", reference)
    with pytest.raises(ModelLoadError, match="lies outside the lake"):
        container(tmp_path / "lake").load()
