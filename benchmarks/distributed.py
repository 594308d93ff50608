"""Training on N workers and in external memory: wall time and each worker's peak RSS.

Printed figures, not a timed test::

    python benchmarks/distributed.py                                   # 1,000,000 x 20, N = 1, 2, 3; external memory 250 k vs 1.25 M rows
    python benchmarks/distributed.py --rows 2000000 --ext-rows 1000000,5000000   # the issue's sizes (minutes, GBs)

The table is generated (``--features`` float32 columns, a binary target from a few of them) and written as
Parquet shards to a lake in a temporary folder, ``--shard-rows`` rows each, one shard at a time so this
process never holds the table (a worker's figures include its imports, printed first). Then, for each N,
:func:`hmlcore.pipelines.training.run_local_workers` starts N worker processes with the DMLC_* variables a
TrainJob's nodes get, each running :mod:`hmlcore.model.worker` on its share of the shards (``--rounds``
trees of depth 6, hist); each worker reports its own peak RSS (``ru_maxrss``) and, in brackets, its peak
anonymous RSS when it ends. External memory trains one worker streaming the shards through
``ExtMemQuantileDMatrix`` on two table sizes: its peak should barely grow with the table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time

from hmlcore.model.distributed import training_job, write_shards
from hmlcore.pipelines.training import run_local_workers
from hmlcore.storage.lake import Lake

#: a worker that reports, as its last lines, its peak RSS (kB, ``ru_maxrss``: with the file pages it maps, such as
#: external memory's page cache, which the kernel may drop) and its peak anonymous RSS (kB, sampled every 50 ms:
#: the memory it cannot give back)
WORKER = (
    "import resource, sys, threading, time\n"
    "from hmlcore.model.worker import main\n"
    "peak = [0]\n"
    "def sample():\n"
    "    while True:\n"
    "        with open('/proc/self/status') as status:\n"
    "            for line in status:\n"
    "                if line.startswith('RssAnon:'):\n"
    "                    peak[0] = max(peak[0], int(line.split()[1]))\n"
    "        time.sleep(0.05)\n"
    "threading.Thread(target=sample, daemon=True).start()\n"
    "code = main(sys.argv[1:])\n"
    "print(f'peak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} peak_anon_kb={peak[0]}', file=sys.stderr, flush=True)\n"
    "sys.exit(code)\n"
)


def write_table(lake: Lake, folder: str, *, rows: int, features: int, shard_rows: int, seed: int = 0) -> list[dict]:
    """``rows`` generated rows as Parquet shards of ``shard_rows`` rows, generated and written one shard at a time."""
    import numpy as np

    rng = np.random.default_rng(seed)
    shards: list[dict] = []
    for start in range(0, rows, shard_rows):
        count = min(shard_rows, rows - start)
        x = rng.normal(size=(count, features)).astype(np.float32)
        y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=count) > 0).astype(np.float32)
        (shard,) = write_shards(lake, f"{folder}/{len(shards):05d}", x, y, shards=1)
        shards.append(shard)
    return shards


def imports_rss_kb() -> int:
    """The peak RSS of a process that only imports what a worker imports: the floor under every worker's figure."""
    import subprocess

    code = "import resource, xgboost, pyarrow.parquet, hmlcore.model.worker; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def train(lake: Lake, shards: list[dict], *, workers: int, rounds: int, external_memory: bool) -> tuple[float, list[tuple[int, int]]]:
    """Train on ``workers`` local workers; return the wall time and each worker's (peak RSS, peak anonymous RSS) in kB."""
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "tree_method": "hist", "seed": 0}
    output = lake.uri("booster.ubj")
    job = training_job(lake=lake, shards=shards, params=params, rounds=rounds, output=output, external_memory=external_memory)
    lines: list[str] = []
    started = time.perf_counter()
    run_local_workers([sys.executable, "-c", WORKER, json.dumps(job)], workers=workers, echo=lines.append)
    seconds = time.perf_counter() - started
    peaks = {}
    for line in lines:
        found = re.match(r"worker (\d+): peak_rss_kb=(\d+) peak_anon_kb=(\d+)", line)
        if found:
            peaks[int(found.group(1))] = (int(found.group(2)), int(found.group(3)))
    return seconds, [peaks[rank] for rank in range(workers)]


def _mb(peak: tuple[int, int]) -> str:
    return f"{peak[0] / 1024:.0f} ({peak[1] / 1024:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the table the N workers share (the issue: 2000000)")
    parser.add_argument("--features", type=int, default=20, help="feature columns")
    parser.add_argument("--workers", default="1,2,3", help="the worker counts to time, comma-separated (empty: skip)")
    parser.add_argument("--rounds", type=int, default=30, help="boosting rounds")
    parser.add_argument("--shard-rows", type=int, default=50_000, help="rows per Parquet shard")
    parser.add_argument(
        "--ext-rows", default="250000,1250000", help="table sizes for external memory (the issue: 1000000,5000000); empty: skip"
    )
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hml-bench-distributed-") as folder:
        lake = Lake(folder)
        shards = write_table(lake, lake.uri("table"), rows=options.rows, features=options.features, shard_rows=options.shard_rows)
        size_mb = options.rows * options.features * 4 / 1e6
        print(f"table: {options.rows:,} rows x {options.features} float32 features ({size_mb:.0f} MB), {len(shards)} shards")
        print(f"a worker's imports alone (hmlcore, xgboost, pyarrow): {imports_rss_kb() / 1024:.0f} MB peak RSS; {options.rounds} rounds")
        print(f"{'workers':>8} {'wall s':>8} {'peak RSS (anonymous) per worker, MB':>44}")
        for workers in (int(n) for n in options.workers.split(",") if n):
            seconds, peaks = train(lake, shards, workers=workers, rounds=options.rounds, external_memory=False)
            shown = ", ".join(_mb(peak) for peak in peaks)
            print(f"{workers:>8} {seconds:>8.1f} {shown:>44}")
        if options.ext_rows:
            print(f"\nexternal memory, 1 worker, shards of {options.shard_rows:,} rows")
            print(f"{'rows':>10} {'wall s':>8} {'peak RSS (anon) MB':>19} {'in memory: wall s':>18} {'peak RSS (anon) MB':>19}")
            for rows in (int(n) for n in options.ext_rows.split(",")):
                table = write_table(lake, lake.uri(f"ext-{rows}"), rows=rows, features=options.features, shard_rows=options.shard_rows)
                ext_seconds, (ext_peak,) = train(lake, table, workers=1, rounds=options.rounds, external_memory=True)
                mem_seconds, (mem_peak,) = train(lake, table, workers=1, rounds=options.rounds, external_memory=False)
                print(f"{rows:>10,} {ext_seconds:>8.1f} {_mb(ext_peak):>19} {mem_seconds:>18.1f} {_mb(mem_peak):>19}")


if __name__ == "__main__":
    main()
