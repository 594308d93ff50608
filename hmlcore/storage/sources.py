"""The rows a pipeline starts from: a file (in the working folder or inside a package), a URL, or a warehouse table.

:func:`read_rows` is what a training pipeline's first step calls with the source its user named:
it finds the source (:func:`locate_source`), reads it by its name's ending (:data:`READERS`, after a
:data:`DECOMPRESSORS` ending) and returns the rows with the sha256 of their content, which the model's
lineage records. The step cache finds a step's input files with :func:`local_file`, the same lookup.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "rows.csv"), "w") as handle:
    ...     _ = handle.write("size,colour\\n1.5,red\\n2.0,blue\\n")
    >>> loaded = read_rows(os.path.join(folder, "rows.csv"))
    >>> loaded.frame.shape, len(loaded.sha256)
    ((2, 2), 64)
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, NamedTuple

from hmlcore.errors import DataSourceError

if TYPE_CHECKING:
    import pandas as pd

    from hmlcore.storage.lake import Lake
    from hmlcore.storage.warehouse import Warehouse

__all__ = ["DECOMPRESSORS", "READERS", "SourceRows", "is_query", "is_table_name", "local_file", "locate_source", "read_rows"]

#: how a file is read, by its name's ending: the pandas reader and its options
READERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("read_csv", {}),
    ".tsv": ("read_csv", {"sep": "\t"}),
    ".parquet": ("read_parquet", {}),
    ".pq": ("read_parquet", {}),
    ".json": ("read_json", {}),
    ".jsonl": ("read_json", {"lines": True}),
    ".ndjson": ("read_json", {"lines": True}),
    ".feather": ("read_feather", {}),
}
#: a further ending after the reader's (``rows.csv.gz``): the file is first decompressed by the ``decompress``
#: function of this standard module (imported when such a file is read: ``--help`` loads this module too)
DECOMPRESSORS: dict[str, str] = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}
#: how long reading an http(s) URL may wait for the server before it fails, in seconds
URL_TIMEOUT = 120.0
#: a string longer than this is no file's path (Linux's PATH_MAX): the step cache does not look for it
_PATH_MAX = 4096

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_QUERY = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)


class SourceRows(NamedTuple):
    """The rows :func:`read_rows` read, the sha256 of their content, and where they were found."""

    frame: pd.DataFrame
    sha256: str
    location: str


def is_table_name(source: str) -> bool:
    """Whether ``source`` names a warehouse table: letters, digits and underscores only, not starting with a digit.

    Example:
        >>> is_table_name("crashes_2024"), is_table_name("data/crashes.csv")
        (True, False)
    """
    return bool(_TABLE_NAME.match(source))


def is_query(source: str) -> bool:
    """Whether ``source`` is a query on the warehouse (it starts with ``SELECT`` or ``WITH``).

    Example:
        >>> is_query("select * from crashes"), is_query("crashes")
        (True, False)
    """
    return bool(_QUERY.match(source))


def local_file(path: str, *, package: str | None = None) -> str | None:
    """The file ``path`` names: as it is if it exists from the working folder, else inside ``package``; ``None`` if neither.

    A string that cannot be a path (empty, with a newline, longer than a path can be) names no file.

    Example:
        >>> local_file("no/such/file.csv") is None
        True
    """
    if not path or "\n" in path or len(path) > _PATH_MAX:
        return None
    try:
        if os.path.isfile(path):
            return path
        if package is None:
            return None
        from importlib import resources  # only a path not in the working folder needs it

        packaged = resources.files(package).joinpath(path)
        return str(packaged) if packaged.is_file() else None
    except (OSError, ValueError, TypeError, ModuleNotFoundError):
        return None


def locate_source(source: str, *, package: str | None = None) -> str:
    """Where the rows ``source`` names are.

    A warehouse table's name, a ``SELECT``/``WITH`` query, a URL, an absolute path and a path that
    exists from the working folder are returned as they are; any other path is looked up inside
    ``package`` (whose ``data/`` folder ships in its wheel, so in its image).

    Args:
        source: a table's name, a query, a URL (``https://``, ``s3://``, ``gs://``...) or a file's path.
        package: the package whose files a relative path may name.

    Example:
        >>> locate_source("crashes"), locate_source("https://example.com/rows.csv")
        ('crashes', 'https://example.com/rows.csv')

    Raises:
        DataSourceError: the path is neither in the working folder nor in ``package``.
    """
    if not isinstance(source, str) or not source.strip():
        raise DataSourceError(f"no data at {source!r}: name a file's path or URL, or a warehouse table")
    if is_table_name(source) or is_query(source) or "://" in source or os.path.isabs(source) or os.path.exists(source):
        return source
    found = local_file(source, package=package)
    if found is None:
        inside = f" nor in the package {package}" if package else ""
        raise DataSourceError(f"no data at {source!r}: it is neither in {os.getcwd()}{inside}")
    return found


def read_rows(
    source: str,
    *,
    warehouse: Warehouse | None = None,
    lake: Lake | None = None,
    package: str | None = None,
    timeout: float = URL_TIMEOUT,
) -> SourceRows:
    """The rows of ``source``, with the sha256 of their content (a changed file or table is a new digest).

    A file is read by its name's ending (see :data:`READERS`), decompressed first if a further ``.gz``,
    ``.bz2`` or ``.xz`` ends it; its digest is that of its bytes as stored. A table's digest is that
    of its columns and values. URLs are read with ``urllib`` (http, https) or fsspec (``s3://``, ``gs://``...):
    a URL of the lake's scheme through the lake's own filesystem (its endpoint and keys), any other with
    the filesystem's credentials from the environment.

    Args:
        source: a warehouse table's name, a URL, or a path found as :func:`locate_source` finds it.
        warehouse: where a table's name is looked up.
        lake: the lake whose filesystem reads URLs of its scheme (an S3 bucket on its own endpoint, say).
        package: the package whose files a relative path may name.
        timeout: how long reading an http(s) URL may wait for the server, in seconds.

    Example:
        >>> loaded = read_rows("data/penguins.csv.gz", package="zoo")  # doctest: +SKIP
        >>> loaded.frame.columns[:2].tolist(), loaded.sha256[:12]  # doctest: +SKIP
        (['bill_length_mm', 'bill_depth_mm'], '3f1c0a9e27b4')

    Raises:
        DataSourceError: nothing is at ``source``, it cannot be read, or it is a query (name a table or a file).
    """
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise DataSourceError(f"timeout must be a positive number of seconds, got {timeout!r}")
    location = locate_source(source, package=package)
    if is_query(location):
        raise DataSourceError(f"cannot read rows from the query {source!r}: name a warehouse table, a file's path or a URL")
    if is_table_name(location):
        return _table_rows(location, warehouse)
    data = _read_bytes(location, lake=lake, timeout=timeout)
    return SourceRows(_parse(data, location), hashlib.sha256(data).hexdigest(), location)


def _table_rows(table: str, warehouse: Warehouse | None) -> SourceRows:
    import pandas as pd

    if warehouse is None:
        raise DataSourceError(f"{table!r} names a warehouse table, but no warehouse was given to read it from")
    if not warehouse.exists(table):
        raise DataSourceError(f"no table {table!r} in the warehouse {warehouse.url}: name a table there, or a file path or URL")
    frame = warehouse.table(table)
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(repr(list(frame.columns)).encode() + hashed.tobytes()).hexdigest()
    return SourceRows(frame, digest, table)


def _read_bytes(location: str, *, lake: Lake | None, timeout: float) -> bytes:
    """The bytes of a local file or of a URL (http(s), or any fsspec URL such as ``s3://`` or ``gs://``)."""
    try:
        if location.startswith(("http://", "https://")):
            import urllib.request

            with urllib.request.urlopen(location, timeout=timeout) as response:
                return response.read()
        if "://" in location and lake is not None:
            with lake.filesystem(location).open(location, "rb") as remote:
                return remote.read()
        if "://" in location:
            import fsspec

            with fsspec.open(location, "rb") as remote:
                return remote.read()
        with open(location, "rb") as local:
            return local.read()
    except FileNotFoundError:
        raise DataSourceError(f"no data at {location}: there is no such file") from None
    except (OSError, ValueError, ImportError) as exc:
        raise DataSourceError(f"cannot read {location}: {exc}") from None


def _parse(data: bytes, name: str) -> pd.DataFrame:
    """The rows of the file ``name`` holding ``data``, read by its name's ending (see :data:`READERS`)."""
    import pandas as pd

    path = (urllib.parse.urlsplit(name).path if "://" in name else name).lower()
    stem, compression = os.path.splitext(path)
    if compression not in DECOMPRESSORS:
        stem = path
    suffix = os.path.splitext(stem)[1]
    if suffix not in READERS:
        raise DataSourceError(f"cannot read {name}: name a file ending in {', '.join(READERS)} (optionally .gz, .bz2 or .xz)")
    try:
        if compression in DECOMPRESSORS:
            data = importlib.import_module(DECOMPRESSORS[compression]).decompress(data)
        reader, options = READERS[suffix]
        return getattr(pd, reader)(io.BytesIO(data), **options)
    except Exception as exc:  # each reader and decompressor raises its own errors: name the file and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataSourceError(f"cannot read {name} as {suffix[1:]}{compression if stem != path else ''}: {reason}") from None
