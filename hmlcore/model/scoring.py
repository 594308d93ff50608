"""Batch scoring: a table's rows through the model in chunks, validated as the inference API validates them.

A scoring run has three parts, each one pipeline step (``pipelines <package>_score``):

1. :func:`stage` streams the rows to score (a warehouse table or query, or Parquet / CSV / JSON / Feather files, one
   file or a folder) into one Parquet file in the lake, a row group per ``chunk_rows`` rows, and
   :func:`plan_shards` splits the rows into contiguous ranges, one per shard;
2. :func:`score_shard` reads a shard's rows a row group at a time, encodes them with the model's own
   encoder (:meth:`~hmlcore.model.ModelContainer.encode`, what ``/predict`` runs), asks the package's
   predictor for the answers and appends them to a Parquet part: the rows the API would refuse go to a
   rejects part with the API's reason, so a bad row never ends the run and is never dropped silently;
3. :func:`merge_parts` streams the parts into a predictions table and a rejects table in the warehouse.

Memory stays bounded by the chunk size: no step holds the whole table. Each row keeps its position in
the input (``input_row``), so the tables are the same whatever the number of shards.

Example:
    >>> staged = stage("rows.parquet", warehouse=app.warehouse, lake=app.lake, url=url)  # doctest: +SKIP
    >>> shards = plan_shards(staged, shards=3)  # doctest: +SKIP
    >>> parts = [score_shard(container, s, lake=app.lake, folder=folder, run_id="r1") for s in shards]  # doctest: +SKIP
    >>> merge_parts(app.warehouse, parts, predictions_table="scores", rejects_table="scores_rejects")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hmlcore.errors import ConfigError, FeatureError, PipelineError
from hmlcore.storage.sources import is_query, is_table_name
from hmlcore.storage.warehouse import arrow_reader

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from hmlcore.model.container import ModelContainer
    from hmlcore.storage.lake import Lake
    from hmlcore.storage.tables import Warehouse

__all__ = [
    "INPUT_ROW",
    "REASON",
    "ScoredChunk",
    "merge_parts",
    "plan_shards",
    "score_frame",
    "score_shard",
    "source_sql",
    "stage",
]

#: the column holding each row's position in the input (0 for the first row), in both tables
INPUT_ROW = "input_row"
#: the rejects table's column saying why the API would refuse the row
REASON = "reason"
#: the rejects table's column holding the row's features as JSON, as they were read
RECORD = "record"
#: the text DuckDB reads as a missing value in a CSV file: pandas' own defaults that the sample data use
CSV_NULLS = ("", "NA", "N/A", "NaN", "nan", "null", "NULL", "None")
Predictor = Callable[["ModelContainer", "np.ndarray"], list[dict[str, Any]]]


# ------------------------------------------------------------------ reading the rows to score
def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def source_sql(source: str, *, lake: Lake | None = None) -> str:
    """The DuckDB ``SELECT`` reading ``source``: a query as it is, else the Parquet, CSV or JSON file(s) at that path or URL.

    A folder is read as every ``*.parquet`` file in it (or every ``*.csv*`` file if it holds no Parquet).
    A CSV file's column types are found from the whole file, and ``NA``, ``NaN``, ``null`` and blanks are
    missing values (as pandas reads them in training).

    Raises:
        ConfigError: the path names nothing, or a file of another kind.
    """
    if is_query(source):
        return source
    fs = lake.filesystem(source) if lake is not None and "://" in source else None
    isdir = fs.isdir(source) if fs is not None else os.path.isdir(source)
    if isdir:
        names = [str(n) for n in (fs.ls(source, detail=False) if fs is not None else os.listdir(source))]
        if any(n.endswith((".parquet", ".pq")) for n in names):
            return f"SELECT * FROM read_parquet({_sql_text(source.rstrip('/') + '/*.parquet')})"
        if any(".csv" in os.path.basename(n) for n in names):
            return _csv_sql(source.rstrip("/") + "/*.csv*")
        raise ConfigError(f"the folder {source} holds no .parquet or .csv file to score")
    exists = fs.exists(source) if fs is not None else os.path.exists(source)
    if not exists:
        raise ConfigError(f"no data at {source}: name a warehouse table, a SELECT query, or a CSV or Parquet file or folder")
    lowered = source.lower()
    if lowered.endswith((".parquet", ".pq")):
        return f"SELECT * FROM read_parquet({_sql_text(source)})"
    if re.search(r"\.(csv|tsv)(\.gz|\.zst)?$", lowered):
        return _csv_sql(source)
    if re.search(r"\.(json|jsonl|ndjson)(\.gz|\.zst)?$", lowered):
        return f"SELECT * FROM read_json({_sql_text(source)}, sample_size=-1)"
    raise ConfigError(
        f"cannot score {source}: name a .parquet, .csv, .tsv, .json or .jsonl file (optionally .gz), a folder of them, or a table"
    )


def _csv_sql(pattern: str) -> str:
    nulls = ", ".join(_sql_text(n) for n in CSV_NULLS)
    return f"SELECT * FROM read_csv({_sql_text(pattern)}, sample_size=-1, nullstr=[{nulls}])"


@contextlib.contextmanager
def _batches(source: str, *, warehouse: Warehouse, lake: Lake, chunk_rows: int) -> Iterator[Any]:
    """A ``pyarrow.RecordBatchReader`` over the rows of ``source`` (a table, a query, or files)."""
    if is_table_name(source):
        if not warehouse.exists(source):
            raise ConfigError(f"no table {source!r} in the warehouse {warehouse.url}: name a table there, a query, or a file")
        yield warehouse.batches(f"SELECT * FROM {source}", rows=chunk_rows)
        return
    if is_query(source):
        yield warehouse.batches(source, rows=chunk_rows)
        return
    if source.lower().endswith((".feather", ".arrow")):
        yield _feather_batches(source, lake=lake)
        return
    import duckdb

    sql = source_sql(source, lake=lake)
    with duckdb.connect(":memory:") as con:
        if "://" in source:
            con.register_filesystem(lake.filesystem(source))  # DuckDB reads the lake's URLs through its fsspec filesystem
        try:
            reader = arrow_reader(con.sql(sql), chunk_rows)
        except duckdb.Error as exc:
            raise ConfigError(f"cannot read {source}: {str(exc).splitlines()[0]}") from None
        yield reader


def _feather_batches(source: str, *, lake: Lake) -> Any:
    """The record batches of a Feather (Arrow IPC) file, one at a time."""
    import pyarrow as pa
    import pyarrow.ipc

    try:
        handle = lake.filesystem(source).open(source, "rb") if "://" in source else pa.memory_map(source)
        reader = pyarrow.ipc.open_file(handle)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"cannot read {source}: {exc}") from None
    return pa.RecordBatchReader.from_batches(reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches)))


@contextlib.contextmanager
def _parquet_writer(lake: Lake, url: str, schema: Any) -> Iterator[Any]:
    """A ``pyarrow.parquet.ParquetWriter`` to ``url`` in the lake; the file appears only once complete."""
    import pyarrow.parquet as pq

    with lake.open_atomic(url) as handle, pq.ParquetWriter(handle, schema) as writer:
        yield writer


def stage(source: str, *, warehouse: Warehouse, lake: Lake, url: str, chunk_rows: int = 50_000) -> dict[str, Any]:
    """Stream the rows of ``source`` into one Parquet file at ``url``, a row group per ``chunk_rows`` rows.

    Args:
        source: a warehouse table's name, a ``SELECT`` query on the warehouse, or the path or URL of a CSV
            or Parquet file or of a folder of them (see :func:`source_sql`).
        url: where the staged file goes in the lake.
        chunk_rows: rows per row group, the unit a shard reads at a time.

    Returns:
        ``{"url", "rows", "row_groups"}``, ``row_groups`` the number of rows in each group.

    Raises:
        ConfigError: the source names nothing readable, or ``chunk_rows`` is not a positive integer.
    """
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    groups: list[int] = []
    with (
        _batches(source, warehouse=warehouse, lake=lake, chunk_rows=chunk_rows) as reader,
        _parquet_writer(lake, url, reader.schema) as writer,
    ):
        for batch in reader:
            if batch.num_rows:
                writer.write_batch(batch, row_group_size=chunk_rows)
                groups.append(batch.num_rows)
    return {"url": lake.uri(url), "rows": sum(groups), "row_groups": groups}


def plan_shards(staged: dict[str, Any], *, shards: int) -> list[dict[str, Any]]:
    """Split the staged rows into ``shards`` contiguous ranges of nearly equal size (fewer if there are fewer rows).

    Each shard is ``{"shard", "url", "start", "stop"}``: it scores the input rows ``start`` to ``stop - 1``.

    Example:
        >>> [(s["start"], s["stop"]) for s in plan_shards({"url": "x.parquet", "rows": 5, "row_groups": [5]}, shards=2)]
        [(0, 3), (3, 5)]
    """
    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise ConfigError(f"shards must be a positive integer, got {shards!r}")
    rows = int(staged["rows"])
    count = max(1, min(shards, rows))
    bounds = [-(-rows * i // count) for i in range(count + 1)]
    return [{"shard": i, "url": staged["url"], "start": bounds[i], "stop": bounds[i + 1]} for i in range(count)]


def _chunks(parquet: Any, start: int, stop: int) -> Iterator[tuple[int, Any]]:
    """``(first input row, rows)`` of each row group's part within rows ``start`` to ``stop - 1``, one group at a time."""
    first = 0
    for group in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(group).num_rows
        low, high = max(start, first), min(stop, first + size)
        if low < high:
            yield low, parquet.read_row_group(group).slice(low - first, high - low)
        first += size
        if first >= stop:
            break


# ------------------------------------------------------------------ scoring
@dataclass
class ScoredChunk:
    """The answers for one chunk: ``answers[i]`` for the chunk's row ``accepted[i]``; ``rejected`` as ``(row, reason)``."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def _records(frame: pd.DataFrame, features: Sequence[str]) -> list[dict[str, Any]]:
    """The rows as the API receives them: JSON values, a missing value as None."""
    columns = frame[list(features)].astype(object)
    return list(columns.where(columns.notna(), None).to_dict("records"))


def score_frame(container: ModelContainer, frame: pd.DataFrame, *, predict: Predictor | None = None) -> ScoredChunk:
    """Score the rows of ``frame`` as ``/predict`` would, one answer per row the API accepts.

    The rows are encoded together (:meth:`ModelContainer.encode <hmlcore.model.ModelContainer.encode>`);
    if the encoder refuses the chunk, each row is encoded alone as the API encodes a request, so each
    refused row gets the API's own message and the others are still scored.

    Args:
        predict: the package's predictor (``inference.predict``: what ``/predict`` answers); default
            :meth:`ModelContainer.predict <hmlcore.model.ModelContainer.predict>`.

    Raises:
        PipelineError: the frame lacks a feature column altogether (no row could be scored).
    """
    import numpy as np

    missing = [f for f in container.features if f not in frame.columns]
    if missing:
        raise PipelineError(f"the rows to score lack column(s) {', '.join(missing)}; they have {', '.join(map(str, frame.columns))}")
    chunk = ScoredChunk()
    if not len(frame):
        return chunk
    try:
        with np.errstate(over="ignore"):  # a number beyond float32 becomes inf, found just below
            matrix = container.encode(frame[container.features])
        if np.isinf(matrix).any():  # a number beyond float32 (or infinite): the API refuses it, the frame path does not
            raise FeatureError("a number is not finite")
        chunk.accepted = list(range(len(frame)))
    except FeatureError:
        rows = []
        for i, record in enumerate(_records(frame, container.features)):
            try:
                rows.append(container.encode([record]))
            except FeatureError as exc:
                chunk.rejected.append((i, str(exc)))
                continue
            chunk.accepted.append(i)
        if not rows:
            return chunk
        matrix = np.vstack(rows)
    answers = (predict or _default_predict)(container, matrix)
    if len(answers) != len(chunk.accepted):
        raise PipelineError(f"the predictor answered {len(answers)} times for {len(chunk.accepted)} rows")
    chunk.answers = answers
    return chunk


def _default_predict(container: ModelContainer, features: np.ndarray) -> list[dict[str, Any]]:
    return container.predict(features)


def _flat(answers: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The answers as columns: a dict or list value (a multiclass model's probabilities) as JSON text.

    Every answer of a predictor has the same fields as the first (the kind's shape); a field missing from
    one answer is None there.
    """
    columns: dict[str, list[Any]] = {}
    for name, first in answers[0].items():
        values = [answer.get(name) for answer in answers]
        if isinstance(first, (dict, list)):
            values = [json.dumps(v) for v in values]
        columns[name] = values
    return columns


def score_shard(
    container: ModelContainer,
    shard: dict[str, Any],
    *,
    lake: Lake,
    folder: str,
    run_id: str,
    keys: Sequence[str] = (),
    predict: Predictor | None = None,
    observe: Callable[[pd.DataFrame], None] | None = None,
) -> dict[str, Any]:
    """Score the rows of ``shard`` (from :func:`plan_shards`), a row group at a time; write the predictions and rejects parts.

    Args:
        container: the model to score with, loaded.
        folder: where in the lake the parts go (``part-<shard>.parquet``, ``rejects-<shard>.parquet``).
        run_id: recorded in every predictions row.
        keys: input columns copied to both tables (an id to join the predictions back on).
        predict: the package's predictor (see :func:`score_frame`).
        observe: called with each chunk's scored rows (e.g. a drift tally's ``add``).

    Returns:
        ``{"shard", "rows", "scored", "rejected", "predictions", "rejects"}``: the parts' URLs ("" when empty).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    unnamed = [k for k in keys if not isinstance(k, str)]
    if unnamed:
        raise ConfigError(f"key columns must be names, got {unnamed[0]!r}")
    base = lake.uri(folder).rstrip("/")
    predictions_url = f"{base}/part-{shard['shard']}.parquet"
    rejects_url = f"{base}/rejects-{shard['shard']}.parquet"
    target = lake.uri(shard["url"])
    handle = lake.filesystem(target).open(target, "rb") if "://" in target else open(target, "rb")
    counts = {"rows": 0, "scored": 0, "rejected": 0}
    with contextlib.ExitStack() as stack:
        stack.enter_context(handle)
        parquet = pq.ParquetFile(handle)
        absent = [k for k in keys if k not in parquet.schema_arrow.names]
        if absent:
            raise PipelineError(f"the rows to score lack key column(s) {', '.join(absent)} named in shared.py")
        writers: dict[str, Any] = {}

        def write(kind: str, url: str, frame: pd.DataFrame) -> None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if kind not in writers:
                writers[kind] = stack.enter_context(_parquet_writer(lake, url, table.schema))
            writers[kind].write_table(table.cast(writers[kind].schema))

        for first, rows in _chunks(parquet, int(shard["start"]), int(shard["stop"])):
            frame = rows.to_pandas()
            chunk = score_frame(container, frame, predict=predict)
            counts["rows"] += len(frame)
            if chunk.accepted:
                kept = frame.iloc[chunk.accepted]
                if observe is not None:
                    observe(kept)
                columns: dict[str, Any] = {INPUT_ROW: [first + i for i in chunk.accepted]}
                columns.update({k: kept[k].to_numpy() for k in keys})
                columns.update(_flat(chunk.answers))
                columns.update({"model": container.name, "model_version": container.version or "", "run_id": run_id})
                write("predictions", predictions_url, pd.DataFrame(columns))
                counts["scored"] += len(chunk.accepted)
            if chunk.rejected:
                positions = [i for i, _ in chunk.rejected]
                refused = frame.iloc[positions]
                records = _records(refused, [c for c in container.features if c in refused.columns])
                columns = {INPUT_ROW: [first + i for i in positions]}
                columns.update({k: refused[k].to_numpy() for k in keys})
                columns[REASON] = [reason for _, reason in chunk.rejected]
                columns[RECORD] = [json.dumps(r, default=str) for r in records]
                columns.update({"model": container.name, "model_version": container.version or "", "run_id": run_id})
                write("rejects", rejects_url, pd.DataFrame(columns))
                counts["rejected"] += len(positions)
    return {
        "shard": shard["shard"],
        **counts,
        "predictions": predictions_url if "predictions" in writers else "",
        "rejects": rejects_url if "rejects" in writers else "",
    }


def merge_parts(warehouse: Warehouse, parts: Sequence[dict[str, Any]], *, predictions_table: str, rejects_table: str) -> dict[str, Any]:
    """Gather the parts of every shard into the predictions table and the rejects table, in ``input_row`` order.

    The parts stream into the tables (:meth:`~hmlcore.storage.warehouse.Warehouse.load_parquet`): on BigQuery
    one load job reads them from GCS; memory never holds a table.

    Both tables are replaced: a run with no rejected row leaves an empty rejects table (with the columns
    every rejects table has), never the rejects of an earlier run.

    Returns:
        ``{"predictions", "rejects", "rows", "scored", "rejected"}``: the two tables and the counts.
    """
    import pandas as pd

    fixed = {
        "predictions": [INPUT_ROW, "model", "model_version", "run_id"],
        "rejects": [INPUT_ROW, REASON, RECORD, "model", "model_version", "run_id"],
    }
    ordered = sorted(parts, key=lambda part: int(part["shard"]))  # each part is in input order: so is the table
    written = {}
    for kind, table in (("predictions", predictions_table), ("rejects", rejects_table)):
        urls = [str(p[kind]) for p in ordered if p.get(kind)]
        if urls:
            written[kind] = warehouse.load_parquet(urls, table)
        else:
            empty = pd.DataFrame({c: pd.Series([], dtype="int64" if c == INPUT_ROW else "string") for c in fixed[kind]})
            written[kind] = warehouse.load_dataframe(empty, table)
    return {
        **written,
        "rows": sum(int(p["rows"]) for p in parts),
        "scored": sum(int(p["scored"]) for p in parts),
        "rejected": sum(int(p["rejected"]) for p in parts),
    }
