"""Batch scoring speed and memory: the scoring step on a Parquet table against the raw booster on the same rows in memory.

Printed figures, not a timed test::

    python benchmarks/score.py                      # 2,000,000 rows: rows/s, then peak RSS at 1 M and 4 M rows
    python benchmarks/score.py --rows 200000 --rss 100000,400000

The model is an XGBoost binary classifier shaped like the template's (300 trees of depth 4) trained on
20,000 rows of 5 numeric and 5 categorical features (:func:`benchmarks.encoding.make_frame`). The
scoring step is :func:`hmlcore.model.scoring.score_shard` on one shard: it reads the staged Parquet a
row group at a time, validates and encodes each chunk, predicts and writes the predictions part. The
baseline is the booster's own ``predict_proba`` on the same rows already encoded in memory. Peak RSS is
measured in a fresh child process that only scores (``VmHWM``: the high-water mark of the child's own memory;
``ru_maxrss`` would not do, as Linux carries it over from the parent through fork and exec), so the table's size
is the only change;
then in another child that only merges the predictions part into the s3 platform's warehouse
(:class:`~hmlcore.storage.warehouse.ParquetWarehouse`, here on a local folder: the same streaming
``select_into`` as on a bucket, without the object store's upload buffers).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from encoding import CATEGORICAL, NUMERIC, make_frame  # noqa: E402

from hmlcore import hml  # noqa: E402
from hmlcore.model import scoring  # noqa: E402
from hmlcore.storage.lake import Lake  # noqa: E402

CHUNK_ROWS = 50_000


def trained_container(folder: Path) -> hml.ModelContainer:
    """A binary model on generated rows, published to ``folder`` (the lake) so a child process can load it."""
    import numpy as np
    from xgboost import XGBClassifier

    frame = make_frame(20_000, seed=1)
    score = frame[NUMERIC].sum(axis=1) + (frame[CATEGORICAL[0]] == "v1") * 0.5
    frame["target"] = (score + np.random.default_rng(2).normal(size=len(frame)) > 0).astype(int)
    container = hml.ModelContainer("bench", "bench", NUMERIC, CATEGORICAL, "target", kind="binary", lake=str(folder))
    container.analyze_distributions(frame)
    features, target = container.build_training_matrix(frame)
    model = XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.05, tree_method="hist", random_state=0)
    return container.bind_model(model.fit(features, target))


def write_table(path: Path, rows: int) -> None:
    """``rows`` generated rows as Parquet, a row group per CHUNK_ROWS rows, written a chunk at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for start in range(0, rows, CHUNK_ROWS):
        table = pa.Table.from_pandas(make_frame(min(CHUNK_ROWS, rows - start), seed=start), preserve_index=False)
        writer = writer or pq.ParquetWriter(str(path), table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def score_file(model_path: Path, table: Path, folder: Path) -> dict:
    """Score every row of ``table`` as one shard; return the part's counts and the seconds the step took."""
    container = hml.ModelContainer("bench", "bench", NUMERIC, CATEGORICAL, "target", kind="binary", lake=str(folder))
    container.load_analysis(model_path.with_suffix(".analysis").read_bytes())
    container.deserialize_model(model_path.read_bytes())
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(str(table)).metadata.num_rows
    (shard,) = scoring.plan_shards({"url": str(table), "rows": rows, "row_groups": []}, shards=1)
    started = time.perf_counter()
    part = scoring.score_shard(container, shard, lake=Lake(str(folder)), folder="parts", run_id="bench")
    return {**part, "seconds": time.perf_counter() - started}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since it started (``VmHWM`` of /proc/self/status).

    Not ``getrusage().ru_maxrss``: Linux keeps that across exec, so a child started by a big parent reports
    the parent's size (the benchmark's parent holds 2 M encoded rows: about 900 MB).
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: this measurement needs Linux")


def merge_child(part: str, folder: str) -> None:
    """Merge the predictions part into a ParquetWarehouse table; print the rows and the peak RSS."""
    from hmlcore.storage.warehouse import ParquetWarehouse

    warehouse = ParquetWarehouse(str(Path(folder) / "warehouse"))
    parts = [{"shard": 0, "rows": 0, "scored": 0, "rejected": 0, "predictions": part, "rejects": ""}]
    started = time.perf_counter()
    scoring.merge_parts(warehouse, parts, predictions_table="scores", rejects_table="scores_rejects")
    rows = int(warehouse.query("SELECT count(*) AS n FROM scores")["n"][0])
    seconds = time.perf_counter() - started
    print(json.dumps({"rows": rows, "seconds": seconds, "max_rss_mb": peak_rss_mb()}))


def child(model_path: str, table: str, folder: str) -> None:
    result = score_file(Path(model_path), Path(table), Path(folder))
    result["max_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def in_child(*args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the speed comparison")
    parser.add_argument("--rss", default="1000000,4000000", help="row counts of the peak RSS comparison, comma-separated")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--merge-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.merge_child:
        merge_child(*args.merge_child)
        return
    import pandas as pd

    folder = Path(tempfile.mkdtemp(prefix="hml-score-bench-"))
    container = trained_container(folder)
    model_path = folder / "model.bin"
    model_path.write_bytes(container.serialize_model())
    model_path.with_suffix(".analysis").write_bytes(container.dump_analysis())

    table = folder / f"rows-{args.rows}.parquet"
    write_table(table, args.rows)
    step = in_child("--child", str(model_path), str(table), str(folder))
    matrix = container.encode(pd.read_parquet(table))
    started = time.perf_counter()
    container.model.predict_proba(matrix)
    raw = time.perf_counter() - started
    seconds = step["seconds"]
    print(f"rows {args.rows:,}; the scoring step: {step['scored']:,} scored in {seconds:.2f}s = {args.rows / seconds:,.0f} rows/s")
    print(f"raw booster predict_proba on the encoded rows in memory: {raw:.2f}s = {args.rows / raw:,.0f} rows/s")
    print(f"scoring step / raw booster: {raw / seconds:.2f}x the booster's speed (goal >= 0.5x)")
    del matrix
    sizes = [int(n) for n in args.rss.split(",")]
    peaks, merges = [], []
    for rows in sizes:
        table = folder / f"rows-{rows}.parquet"
        if not table.exists():
            write_table(table, rows)
        scored = in_child("--child", str(model_path), str(table), str(folder))
        peaks.append(scored["max_rss_mb"])
        print(f"peak RSS scoring {rows:,} rows: {peaks[-1]:.0f} MB")
        merged = in_child("--merge-child", scored["predictions"], str(folder))
        merges.append(merged["max_rss_mb"])
        print(f"peak RSS merging {merged['rows']:,} predictions into a ParquetWarehouse: {merges[-1]:.0f} MB ({merged['seconds']:.1f}s)")
    ratios = f"scoring {peaks[-1] / peaks[0]:.2f}, merging {merges[-1] / merges[0]:.2f}"
    print(f"peak RSS ratio {sizes[-1]:,} / {sizes[0]:,} rows: {ratios} (goal <= 1.3)")
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
