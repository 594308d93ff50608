"""Write a local file atomically: a reader sees the old file or the whole new one, never part of it."""

from __future__ import annotations

import os
import tempfile

__all__ = ["write_atomic"]


def write_atomic(path: str, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it into place.

    The folder is created if missing. On any failure the temporary file is removed and ``path`` is left
    as it was.

    Raises:
        OSError: the folder or the file cannot be written (callers turn it into their own error).

    Example:
        >>> import pathlib, tempfile
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "out" / "a.txt"
        >>> write_atomic(str(target), "hello")
        >>> target.read_text()
        'hello'
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
