"""Training one XGBoost model on several workers with XGBoost's own collective (the tracker + workers protocol).

A worker learns where it stands from the four variables Kubeflow Trainer's ``xgboost-distributed`` runtime
injects into every node of a TrainJob (:class:`Collective`): ``DMLC_TRACKER_URI`` (the host of rank 0),
``DMLC_TRACKER_PORT``, ``DMLC_TASK_ID`` (its rank) and ``DMLC_NUM_WORKER``. Rank 0 starts XGBoost's
:class:`~xgboost.tracker.RabitTracker` before joining, as the runtime expects; every worker reads only its own
share of the training matrix's Parquet shards (:func:`write_shards`, :func:`shards_of`), and the workers build
one model by agreeing on every histogram through the collective. Rank 0 writes the booster to the lake.

The same command runs a worker everywhere: ``python -m hmlcore.model.worker <job JSON>`` (see
:func:`training_job`), as N local processes on a laptop or as the N nodes of a TrainJob.

Example:
    >>> shards_of(["a", "b", "c", "d", "e"], rank=1, world=2)
    ['b', 'd']
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore._lazy import lazy_module
from hmlcore.errors import PipelineError
from hmlcore.storage.lake import Lake, sha256_bytes

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy_module("numpy")

__all__ = [
    "COLLECTIVE_ENV",
    "Collective",
    "TrainingError",
    "estimator_from_booster",
    "external_matrix",
    "read_shards",
    "run_worker",
    "shards_of",
    "training_job",
    "write_shards",
]

#: the variables Kubeflow Trainer's XGBoost runtime sets in every node, in the order :class:`Collective` holds them
COLLECTIVE_ENV = ("DMLC_TRACKER_URI", "DMLC_TRACKER_PORT", "DMLC_TASK_ID", "DMLC_NUM_WORKER")
#: the column of a shard holding the target; the features are the columns ``f0``, ``f1``, ...
TARGET_COLUMN = "target"
#: what rank 0 prints once its tracker listens (a local launcher starts the other workers then)
TRACKER_READY = "tracker listening"
#: seconds a worker waits on its peers in one collective operation before giving up (a peer died)
COLLECTIVE_TIMEOUT = 300


#: fsspec options holding credentials: never written into a job
_SECRET_OPTIONS = frozenset({"key", "secret", "token", "password", "session_token", "credentials", "account_key"})


class TrainingError(PipelineError):
    """Raised if distributed training cannot start or a worker fails; the message names the worker."""


@dataclass(frozen=True)
class Collective:
    """Where one worker stands: the tracker's host and port, its rank and the number of workers."""

    tracker_uri: str
    tracker_port: int
    rank: int
    world: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Collective:
        """The worker's place from :data:`COLLECTIVE_ENV`, as the Trainer runtime sets it.

        Raises:
            TrainingError: a variable is missing or not a number where one belongs.

        Example:
            >>> env = {"DMLC_TRACKER_URI": "job-node-0-0.job", "DMLC_TRACKER_PORT": "29500", "DMLC_TASK_ID": "1", "DMLC_NUM_WORKER": "2"}
            >>> Collective.from_env(env)
            Collective(tracker_uri='job-node-0-0.job', tracker_port=29500, rank=1, world=2)
        """
        env = os.environ if environ is None else environ
        missing = [name for name in COLLECTIVE_ENV if not env.get(name)]
        if missing:
            raise TrainingError(f"a training worker needs {', '.join(missing)} set (the Kubeflow Trainer XGBoost runtime sets them)")
        numbers = {}
        for name in COLLECTIVE_ENV[1:]:
            try:
                numbers[name] = int(env[name])
            except ValueError:
                raise TrainingError(f"{name} is {env[name]!r}, not a whole number") from None
        rank, world = numbers["DMLC_TASK_ID"], numbers["DMLC_NUM_WORKER"]
        if world < 1 or not 0 <= rank < world:
            raise TrainingError(f"DMLC_TASK_ID {rank} is not a rank among DMLC_NUM_WORKER {world} workers")
        return cls(env["DMLC_TRACKER_URI"], numbers["DMLC_TRACKER_PORT"], rank, world)

    def env(self) -> dict[str, str]:
        """The variables that give a process this place (what the Trainer runtime injects)."""
        return dict(zip(COLLECTIVE_ENV, (self.tracker_uri, str(self.tracker_port), str(self.rank), str(self.world)), strict=True))


def shards_of(shards: Sequence[Any], *, rank: int, world: int) -> list[Any]:
    """The shards worker ``rank`` of ``world`` reads: every ``world``-th one from its rank."""
    return list(shards[rank::world])


def write_shards(lake: Lake, folder: str, features: np.ndarray, target: np.ndarray, *, shards: int) -> list[dict[str, Any]]:
    """Write the training matrix to ``folder`` as ``shards`` Parquet files; return ``{"uri", "sha256", "rows"}`` of each.

    Row ``i`` goes to shard ``i % shards``, so every shard is a like sample of the whole (each class in
    each shard when the table has a few rows of it per shard).

    Raises:
        TrainingError: ``shards`` is not a positive whole number, or the matrix has fewer rows than shards.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(shards, int) or isinstance(shards, bool) or shards < 1:
        raise TrainingError(f"shards must be a positive whole number, got {shards!r}")
    if len(features) < shards:
        raise TrainingError(f"the training matrix has {len(features)} rows, fewer than the {shards} shards asked for")
    written = []
    for index in range(shards):
        part = features[index::shards]
        columns = {f"f{j}": part[:, j] for j in range(part.shape[1])}
        columns[TARGET_COLUMN] = target[index::shards]
        buffer = io.BytesIO()
        pq.write_table(pa.table(columns), buffer)
        data = buffer.getvalue()
        uri = lake.write_bytes(f"{folder.rstrip('/')}/part-{index:05d}.parquet", data)
        written.append({"uri": uri, "sha256": sha256_bytes(data), "rows": len(part)})
    return written


def read_shards(lake: Lake, shards: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The features and target of ``shards`` (as :func:`write_shards` wrote them), each verified by its sha256.

    Raises:
        TrainingError: a shard is missing or its bytes differ from what was written.
    """
    import pyarrow.parquet as pq

    features, targets = [], []
    for shard in shards:
        try:
            data = lake.read_bytes(shard["uri"])
        except FileNotFoundError:
            raise TrainingError(f"training shard {shard['uri']} does not exist") from None
        if sha256_bytes(data) != shard["sha256"]:
            raise TrainingError(f"training shard {shard['uri']} fails verification: its sha256 differs from when it was written")
        table = pq.read_table(io.BytesIO(data))
        names = [name for name in table.column_names if name != TARGET_COLUMN]
        features.append(np.column_stack([table.column(name).to_numpy() for name in names]))
        targets.append(table.column(TARGET_COLUMN).to_numpy())
    return np.concatenate(features), np.concatenate(targets)


def training_job(
    *,
    lake: Lake,
    shards: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    rounds: int,
    output: str,
    external_memory: bool = False,
) -> dict[str, Any]:
    """What every worker is told, as JSON-ready data: the shards, XGBoost's parameters and rounds, where rank 0 writes the booster.

    With ``external_memory`` a worker streams its shards one at a time through XGBoost's external-memory
    iterator (:func:`external_matrix`) instead of holding them all.

    The job travels on the workers' command line (and in a TrainJob's spec): the lake's credentials stay
    out of it; the workers take them from their environment (``AWS_ACCESS_KEY_ID``..., a GCP key file), as
    every step does.
    """
    options = {name: value for name, value in lake.storage_options.items() if name not in _SECRET_OPTIONS}
    return {
        "lake": lake.url,
        "storage_options": options,
        "shards": [dict(shard) for shard in shards],
        "params": dict(params),
        "rounds": int(rounds),
        "output": output,
        "external_memory": bool(external_memory),
    }


def run_worker(job: Mapping[str, Any], collective: Collective) -> None:
    """Train as worker ``collective.rank``: rank 0 starts the tracker; all train on their shards; rank 0 writes the booster.

    Raises:
        TrainingError: the job gives this worker no shard, or the collective fails (a peer died or is unreachable).
    """
    import xgboost
    from xgboost import collective as xgb_collective
    from xgboost.tracker import RabitTracker

    mine = shards_of(job["shards"], rank=collective.rank, world=collective.world)
    if not mine:
        raise TrainingError(f"worker {collective.rank} of {collective.world} has no shard: the job holds only {len(job['shards'])}")
    lake = Lake(job["lake"], storage_options=job.get("storage_options") or {})
    tracker = None
    if collective.rank == 0:
        # bind where the workers reach it: all interfaces in a pod, the loopback address on one machine
        local = collective.tracker_uri in ("127.0.0.1", "localhost")
        tracker = RabitTracker(
            n_workers=collective.world, host_ip=collective.tracker_uri if local else "0.0.0.0", port=collective.tracker_port, sortby="task"
        )
        tracker.start()
        print(f"{TRACKER_READY} on port {collective.tracker_port}", file=sys.stderr, flush=True)
    rows = sum(int(shard["rows"]) for shard in mine)
    how = "streamed through external memory" if job.get("external_memory") else "in memory"
    print(f"worker {collective.rank} of {collective.world}: {rows} rows from {len(mine)} shard(s), {how}", file=sys.stderr, flush=True)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            xgb_collective.CommunicatorContext(
                dmlc_tracker_uri=collective.tracker_uri,
                dmlc_tracker_port=collective.tracker_port,
                dmlc_task_id=str(collective.rank),
                dmlc_timeout=COLLECTIVE_TIMEOUT,
            )
        )
        if job.get("external_memory"):
            cache = stack.enter_context(tempfile.TemporaryDirectory(prefix="hml-xgb-cache-"))
            matrix = external_matrix(lake, mine, cache_prefix=os.path.join(cache, "pages"))
        else:
            features, target = read_shards(lake, mine)
            matrix = xgboost.QuantileDMatrix(features, label=target)
            del features, target
        booster = xgboost.train(dict(job["params"]), matrix, num_boost_round=int(job["rounds"]))
        if xgb_collective.get_rank() == 0:
            lake.write_bytes(job["output"], bytes(booster.save_raw("ubj")))
    if tracker is not None:
        tracker.wait_for()
    print(f"worker {collective.rank} of {collective.world}: done", file=sys.stderr, flush=True)


def external_matrix(lake: Lake, shards: Sequence[Mapping[str, Any]], *, cache_prefix: str) -> Any:
    """An ``ExtMemQuantileDMatrix`` over ``shards``, read one shard at a time; XGBoost keeps its pages at ``cache_prefix``.

    Memory holds one shard, the quantile sketch and XGBoost's per-row state (label, gradient, position), not
    the share's features: a share larger than memory trains, at the price of reading the cached pages again
    for each tree (see the README's trade-off).
    """
    import xgboost

    class ShardBatches(xgboost.DataIter):
        """XGBoost's data iterator over the Parquet shards: one batch per shard."""

        def __init__(self) -> None:
            self._next = 0
            super().__init__(cache_prefix=cache_prefix)

        def next(self, input_data: Any) -> bool:
            if self._next == len(shards):
                return False
            features, target = read_shards(lake, [shards[self._next]])
            input_data(data=features, label=target)
            self._next += 1
            return True

        def reset(self) -> None:
            self._next = 0

    return xgboost.ExtMemQuantileDMatrix(ShardBatches())


def estimator_from_booster(data: bytes, kind: str) -> Any:
    """The XGBoost scikit-learn estimator (a classifier, or a regressor for ``kind`` regression) holding the booster ``data``."""
    import xgboost

    model = xgboost.XGBRegressor() if kind == "regression" else xgboost.XGBClassifier()
    model.load_model(bytearray(data))
    return model
