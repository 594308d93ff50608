"""Train one model on N workers: N local processes on a laptop, a Kubeflow Trainer TrainJob of N nodes in the cluster.

Both run the same worker (:mod:`hmlcore.model.worker`) with the same ``DMLC_*`` variables. A step that
``compile`` prepared for the cluster has :data:`~hmlcore._env.TRAINJOB` set and submits a TrainJob
(:mod:`hmlcore.deploy.trainjob`); anywhere else (``run-all``, ``run train-model``) the workers are local
processes (:mod:`hmlcore.pipelines.training`).

Example:
    >>> params = {"objective": "binary:logistic", "max_depth": 4}
    >>> model = train_distributed(ctx, matrix, workers=3, params=params, rounds=300, kind="binary")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore.model.distributed import TrainingError, estimator_from_booster, training_job
from hmlcore.pipelines.training import run_local_workers, worker_command

if TYPE_CHECKING:
    from hmlcore.pipelines.context import OpContext

__all__ = ["NODE_COMMAND", "train_distributed"]

#: what a TrainJob's nodes run (the image's Python), followed by the job's JSON
NODE_COMMAND = ["python", "-m", "hmlcore.model.worker"]


def train_distributed(
    ctx: OpContext,
    matrix: Mapping[str, Any],
    *,
    workers: int,
    params: Mapping[str, Any],
    rounds: int,
    kind: str,
    external_memory: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Any:
    """Train one XGBoost model on ``workers`` workers over ``matrix``'s shards; return it as a scikit-learn estimator.

    Args:
        matrix: what :func:`~hmlcore.pipelines.training.save_training_shards` returned.
        workers: how many workers; each reads ``len(shards) / workers`` of the shards.
        params: XGBoost's training parameters (``objective``, ``max_depth``, ``eta``, ``num_class``...).
        rounds: the number of boosting rounds (trees, per class).
        kind: the model kind: ``regression`` gives an ``XGBRegressor``, else an ``XGBClassifier``.
        external_memory: each worker streams its shards through XGBoost's external memory instead of loading them.
        echo: where the workers' progress goes (default: stderr, the step's log).

    Raises:
        TrainingError: the matrix is not sharded, has fewer shards than workers, or a worker (or the TrainJob) failed.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise TrainingError(f"workers must be a positive whole number, got {workers!r}")
    shards = matrix.get("shards") if isinstance(matrix, Mapping) else None
    if not shards:
        raise TrainingError("the training matrix is not sharded: run build_training_matrix with the same workers as train_model")
    if len(shards) < workers:
        raise TrainingError(f"{workers} workers need at least {workers} shards; the training matrix has {len(shards)}")
    say = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    output = ctx.artifact_uri("booster.ubj")
    described = training_job(lake=ctx.lake, shards=shards, params=params, rounds=rounds, output=output, external_memory=external_memory)
    job = json.dumps(described, separators=(",", ":"))
    trainjob = _env.TRAINJOB.get()
    if trainjob:
        _run_trainjob(trainjob, job, ctx=ctx, workers=workers, echo=say)
    else:
        run_local_workers([*worker_command(), job], workers=workers, echo=say)
    try:
        data = ctx.lake.read_bytes(output)
    except FileNotFoundError:
        raise TrainingError(f"the workers finished but rank 0 wrote no model to {output}") from None
    return estimator_from_booster(data, kind)


def _run_trainjob(spec_text: str, job: str, *, ctx: OpContext, workers: int, echo: Callable[[str], None]) -> None:
    from hmlcore.deploy.k8s_apply import KubeClient  # the kubernetes client: only a step whose workers run as a TrainJob
    from hmlcore.deploy.trainjob import TrainJobRun, trainjob_manifest, trainjob_name  # likewise

    try:
        spec = json.loads(spec_text)
    except ValueError:
        raise TrainingError(f"{_env.TRAINJOB.name} is not the JSON compile writes: compile the pipeline again") from None
    manifest = trainjob_manifest(
        trainjob_name(ctx.step), spec, command=NODE_COMMAND, args=[job], workers=workers, labels={"hml-step": ctx.step.replace("_", "-")}
    )
    client = KubeClient.from_config()
    try:
        TrainJobRun(client, echo=echo).run(manifest)
    finally:
        client.close()
