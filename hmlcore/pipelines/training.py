"""A training step's workers on this machine, and the shards they read.

:func:`save_training_shards` (in ``build_training_matrix``) writes the matrix as Parquet shards in the
lake; :func:`run_local_workers` starts the workers of :mod:`hmlcore.model.worker` as local processes
given exactly the variables a Kubeflow Trainer TrainJob gives its nodes, so a laptop runs the very
command a cluster runs (:func:`hmlcore.training.train_distributed` chooses between the two).

Example:
    >>> shards = save_training_shards(ctx, features, target, shards=3)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hmlcore._machine import available_cores
from hmlcore.model.distributed import TRACKER_READY, Collective, TrainingError, write_shards

if TYPE_CHECKING:
    import numpy as np

    from hmlcore.pipelines.context import OpContext

__all__ = ["run_local_workers", "save_training_shards", "worker_command"]

#: the seconds a worker has to stop after SIGTERM before it is killed
_GRACE = 10.0


def save_training_shards(
    ctx: OpContext, features: np.ndarray, target: np.ndarray, *, shards: int, rows_per_shard: int | None = None
) -> dict[str, Any]:
    """Write the training matrix to this step's lake folder as Parquet shards, for ``train_model``'s workers.

    Args:
        shards: at least this many (one per worker).
        rows_per_shard: and, if given, as many more as keep each shard within this many rows (external memory
            streams one shard at a time).

    Returns ``{"shards": [{"uri", "sha256", "rows"}, ...], "rows", "columns"}``, the step's output.
    """
    if rows_per_shard is not None:
        if not isinstance(rows_per_shard, int) or isinstance(rows_per_shard, bool) or rows_per_shard < 1:
            raise TrainingError(f"rows_per_shard must be a positive whole number, got {rows_per_shard!r}")
        shards = max(shards, -(-len(features) // rows_per_shard))
    written = write_shards(ctx.lake, ctx.artifact_uri("shards"), features, target, shards=shards)
    return {"shards": written, "rows": int(len(features)), "columns": int(features.shape[1])}


def worker_command() -> list[str]:
    """The command every worker runs, followed by the job's JSON: this interpreter running :mod:`hmlcore.model.worker`."""
    return [sys.executable, "-m", "hmlcore.model.worker"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_local_workers(
    command: Sequence[str],
    *,
    workers: int,
    echo: Callable[[str], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run ``command`` as ``workers`` local processes placed as a TrainJob's nodes are; wait for all of them.

    Each process gets the variables of :data:`~hmlcore.model.distributed.COLLECTIVE_ENV` (the tracker on
    127.0.0.1 and a free port, its rank, the count) and stays in this process's group (stopping the step
    stops its workers); its output goes to ``echo``
    line by line, prefixed ``worker <rank>:``. Rank 0 starts first; the others once its tracker listens.
    When one fails, the others are stopped at once.

    Raises:
        TrainingError: a worker exited with an error or a signal: the message names it and its last line.
    """
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    port = _free_port()
    base = dict(os.environ if environ is None else environ)
    # the workers share this machine's cores: each gets its part (OpenMP threads spinning on busy cores stall the collective)
    base.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // workers)))
    processes: list[subprocess.Popen[str]] = []
    last_lines: list[str] = [""] * workers
    relays: list[threading.Thread] = []
    tracker_ready = threading.Event()

    def relay(rank: int, stream: Any) -> None:
        with contextlib.suppress(ValueError, OSError):  # the pipe closed under it: the worker was stopped
            for line in stream:
                line = line.rstrip("\n")
                if line:
                    last_lines[rank] = line
                    if rank == 0 and TRACKER_READY in line:
                        tracker_ready.set()
                    say(f"worker {rank}: {line}")

    try:
        for rank in range(workers):
            env = {**base, **Collective("127.0.0.1", port, rank, workers).env()}
            process = subprocess.Popen(list(command), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            processes.append(process)
            thread = threading.Thread(target=relay, args=(rank, process.stdout), daemon=True, name=f"hml-worker-{rank}-log")
            thread.start()
            relays.append(thread)
            if rank == 0:  # the others connect at once: no retries while rank 0 is still starting its tracker
                while not tracker_ready.wait(0.2) and process.poll() is None:
                    pass
        while True:
            codes = [process.poll() for process in processes]
            failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                rank, code = failed[0]
                _stop(processes)
                for thread in relays:
                    thread.join(timeout=5)
                how = f"was killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
                said = f": {last_lines[rank]}" if last_lines[rank] else ""
                raise TrainingError(f"training worker {rank} of {workers} {how}{said}")
            if all(code == 0 for code in codes):
                break
            time.sleep(0.2)
        for thread in relays:
            thread.join(timeout=5)
    finally:
        _stop(processes)


def _stop(processes: Sequence[subprocess.Popen[str]]) -> None:
    """Stop every worker still running: SIGTERM, then SIGKILL after :data:`_GRACE` seconds."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + _GRACE
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for process in processes:
        if process.stdout is not None:
            process.stdout.close()
