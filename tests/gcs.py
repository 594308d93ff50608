"""A real GCS API on 127.0.0.1 for the tests: ``gcp-storage-emulator`` in a thread, in memory.

gcsfs talks to it over HTTP exactly as it would to Google Cloud Storage: ``STORAGE_EMULATOR_HOST``
points it there (and makes it use anonymous credentials). ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT`` is read
when gcsfs is imported, so it is set here, before any test imports gcsfs; without it gcsfs waits 60 s
per bucket for a hierarchical-namespace API the emulator does not have.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.conftest import free_port

os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

BUCKET = "hml-test"


@dataclass
class Emulator:
    """A running emulator: its URL and a bucket that exists in it."""

    url: str
    bucket: str

    def fresh_prefix(self) -> str:
        """A ``gs://`` URL no other test uses."""
        return f"gs://{self.bucket}/{uuid.uuid4().hex[:10]}"


@contextmanager
def gcs_emulator() -> Iterator[Emulator]:
    """Start the emulator on a free 127.0.0.1 port with one bucket; stop it on exit."""
    pytest.importorskip("gcsfs")
    server_module = pytest.importorskip("gcp_storage_emulator.server")
    port = free_port()
    server = server_module.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    try:
        yield Emulator(url=url, bucket=BUCKET)
    finally:
        if previous is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = previous
        server.stop()
        import fsspec

        fsspec.filesystem("gs").clear_instance_cache()
