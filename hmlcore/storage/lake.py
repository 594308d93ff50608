"""The lake: a place for artifacts, addressed by URL.

A lake is a folder (the default), an ``s3://bucket/prefix`` or a ``gs://bucket/prefix`` URL; fsspec does the talking, so any
filesystem fsspec knows works the same way. Writes are atomic: a reader never sees half a file.

Example:
    >>> lake = Lake("/tmp/lake")
    >>> uri = lake.write_bytes("models/a.txt", b"hello")
    >>> lake.read_bytes(uri)
    b'hello'
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlsplit

from hmlcore._files import write_atomic
from hmlcore.errors import ConfigError, StorageError

__all__ = ["Lake", "sha256_bytes"]


def sha256_bytes(data: bytes) -> str:
    """Return the hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def _protocol(url: str) -> str:
    return url.split("://", 1)[0] if _is_remote(url) else "file"


class Lake:
    """Artifacts under one root URL.

    Args:
        url: a local folder, ``file://`` URL or any fsspec URL such as ``s3://bucket/prefix`` (the ``s3``
            extra: s3fs) or ``gs://bucket/prefix`` (the ``gcp`` extra: gcsfs).
        storage_options: passed to fsspec for the lake's own filesystem (e.g. ``{"project": ...}``, or
            ``{"client_kwargs": {"endpoint_url": ...}}`` for an S3-compatible store).

    Example:
        >>> Lake("gs://bucket/hml/").uri("models", "m.json")
        'gs://bucket/hml/models/m.json'
    """

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ConfigError(f"lake URL must be a non-empty string, got {url!r}")
        url = url.rstrip("/")
        if url.startswith("file://"):
            url = url[len("file://") :]
        self.url = url if _is_remote(url) else os.path.abspath(url)
        self.storage_options = storage_options or {}
        self._fs: Any = None

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    @property
    def fs(self) -> Any:
        """The fsspec filesystem behind this lake (created on first use)."""
        if self._fs is None:
            self._fs = self._filesystem(_protocol(self.url))
        return self._fs

    def _filesystem(self, protocol: str) -> Any:
        import fsspec

        try:
            return fsspec.filesystem(protocol, **(self.storage_options if protocol == _protocol(self.url) else {}))
        except (ImportError, ValueError) as exc:
            extras = {"gs": " (pip install 'hmlcore[gcp]')", "gcs": " (pip install 'hmlcore[gcp]')", "s3": " (pip install 'hmlcore[s3]')"}
            extra = extras.get(protocol, "")
            raise ConfigError(f"cannot open lake {self.url!r}: {exc}{extra}") from exc

    def _fs_for(self, target: str) -> Any:
        protocol = _protocol(target)
        return self.fs if protocol == _protocol(self.url) else self._filesystem(protocol)

    def filesystem(self, url: str) -> Any:
        """The fsspec filesystem that reads ``url`` (the lake's own, with its storage options, for the lake's scheme)."""
        return self._fs_for(url)

    def uri(self, *parts: str) -> str:
        """The full URL of ``parts`` joined under the lake root; a full URL is returned as it is."""
        if len(parts) == 1 and self.owns(parts[0]):
            return parts[0]
        path = "/".join(p.strip("/") for p in parts if p)
        return f"{self.url}/{path}"

    def owns(self, uri: str) -> bool:
        """Whether ``uri`` is a full URL or absolute path rather than a path inside the lake."""
        return _is_remote(uri) or os.path.isabs(uri)

    def contains(self, uri: str) -> bool:
        """Whether ``uri`` (a path inside the lake, a full URL or an absolute path) lies under the lake's root.

        A URL of another scheme, host or bucket, a path outside the root folder or prefix, any ``..``
        segment, a query or a fragment: all lie outside. Locally, symbolic links are followed first.

        Example:
            >>> lake = Lake("s3://models/hml")
            >>> lake.contains("s3://models/hml/a.json"), lake.contains("s3://other/hml/a.json"), lake.contains("../a.json")
            (True, False, False)
        """
        if not isinstance(uri, str) or not uri or ".." in uri.replace("\\", "/").split("/"):
            return False
        target = self.uri(uri[len("file://") :] if uri.startswith("file://") else uri)
        if _is_remote(self.url) or _is_remote(target):
            if not (_is_remote(self.url) and _is_remote(target)):
                return False
            root, inner = urlsplit(self.url), urlsplit(target)
            if inner.query or inner.fragment or (inner.scheme, inner.netloc) != (root.scheme, root.netloc):
                return False
            prefix = root.path.rstrip("/")
            return inner.path.startswith(prefix + "/")
        folder = os.path.realpath(self.url)
        return os.path.realpath(target).startswith(folder.rstrip(os.sep) + os.sep)

    def write_bytes(self, path: str, data: bytes) -> str:
        """Write ``data`` to ``path`` atomically and return its full URL.

        Locally the bytes go to a temporary file in the same folder that is then renamed; object stores
        publish an object only once its upload completes, so a reader never sees part of it.

        Raises:
            StorageError: the lake cannot be written there (the message names the URL and the reason).
            ConfigError: the URL's filesystem needs an extra that is not installed.
        """
        target = self.uri(path)
        if _is_remote(target):
            try:
                self._fs_for(target).pipe_file(target, bytes(data))
            except ConfigError:  # a missing extra: say what to install, not that the write failed
                raise
            except Exception as exc:  # noqa: BLE001 - any storage failure becomes one clear error
                raise StorageError(f"cannot write {target}: {type(exc).__name__}: {exc}") from exc
            return target
        target = target[len("file://") :] if target.startswith("file://") else target
        try:
            write_atomic(target, data)
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
        return target

    @contextlib.contextmanager
    def open_atomic(self, path: str) -> Iterator[IO[bytes]]:
        """A binary file to stream into at ``path``: it appears whole when the block ends, and not at all if it raises.

        Locally the bytes go to a temporary file in the same folder, renamed into place at the end. On an
        object store the upload completes at the end, or is abandoned (fsspec's ``discard``) on an error,
        so a reader never sees a part. Memory holds one upload block, not the file.

        Example:
            >>> lake = Lake(tempfile.mkdtemp())
            >>> with lake.open_atomic("parts/a.bin") as handle:
            ...     _ = handle.write(b"streamed")
            >>> lake.read_bytes("parts/a.bin")
            b'streamed'

        Raises:
            StorageError: the file cannot be created there.
        """
        target = self.uri(path)
        if _is_remote(target):
            try:
                handle = self._fs_for(target).open(target, "wb")
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - any storage failure becomes one clear error
                raise StorageError(f"cannot write {target}: {type(exc).__name__}: {exc}") from exc
            try:
                yield handle
            except BaseException:
                handle.discard()  # abandon the upload: nothing is published
                handle.closed = True  # and never complete it later (closing at garbage collection would)
                raise
            handle.close()  # completes the upload: the object appears whole
            return
        target = target[len("file://") :] if target.startswith("file://") else target
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            descriptor, scratch = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target))
        except OSError as exc:
            raise StorageError(f"cannot write {target}: {exc.strerror or exc}") from exc
        try:
            with os.fdopen(descriptor, "wb") as handle:
                yield handle
            os.replace(scratch, target)
        finally:
            if os.path.exists(scratch):
                os.unlink(scratch)

    def read_bytes(self, path: str) -> bytes:
        """Read the bytes at ``path`` (inside the lake, or a full URL of any filesystem fsspec knows).

        Raises:
            FileNotFoundError: nothing is stored there.
        """
        target = self.uri(path)
        if _is_remote(target):
            return bytes(self._fs_for(target).cat_file(target))
        target = target[len("file://") :] if target.startswith("file://") else target
        with open(target, "rb") as handle:
            return handle.read()

    def exists(self, path: str) -> bool:
        """Whether something is stored at ``path``."""
        target = self.uri(path)
        if _is_remote(target):
            return bool(self._fs_for(target).exists(target))
        return os.path.exists(target)

    def list_files(self, folder: str) -> list[str]:
        """The names of the files directly in ``folder`` (sorted; none if the folder does not exist).

        On object stores the listing is asked afresh each time (fsspec's listing cache is dropped first),
        so a file written a moment ago is seen.
        """
        target = self.uri(folder)
        if not _is_remote(target):
            try:
                return sorted(e.name for e in os.scandir(target) if e.is_file() and not e.name.startswith("."))
            except (FileNotFoundError, NotADirectoryError):
                return []
        fs = self._fs_for(target)
        fs.invalidate_cache(target)
        try:
            entries = fs.ls(target, detail=True)
        except FileNotFoundError:
            return []
        names = (str(e["name"]).rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "file")
        return sorted(n for n in names if n and not n.startswith("."))

    def delete(self, path: str) -> bool:
        """Remove the file at ``path`` if it is there; return whether something was removed. Never raises."""
        target = self.uri(path)
        try:
            if _is_remote(target):
                fs = self._fs_for(target)
                if not fs.exists(target):
                    return False
                fs.rm_file(target)
                return True
            os.unlink(target)
            return True
        except Exception:  # noqa: BLE001 - clean-up is best effort
            return False
