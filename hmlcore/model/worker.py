"""One worker of a distributed training: ``python -m hmlcore.model.worker '<job JSON>'``.

It runs :func:`hmlcore.model.distributed.run_worker` where the ``DMLC_*`` variables place it (Kubeflow
Trainer's XGBoost runtime sets them in every node; ``run-all`` in every local worker process). An error is
one line naming the worker, and the exit code is not 0.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from hmlcore.errors import HmlError
from hmlcore.model.distributed import Collective, run_worker

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hmlcore.model.worker '<job JSON>'``: run one worker where :data:`COLLECTIVE_ENV` places it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m hmlcore.model.worker '<job JSON>'", file=sys.stderr)
        return 2
    try:
        job = json.loads(args[0])
        collective = Collective.from_env()
    except (ValueError, HmlError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    try:
        run_worker(job, collective)
    except HmlError as exc:
        print(f"Error: worker {collective.rank}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - XGBoost raises its own errors: one line naming the worker and the reason
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        print(f"Error: worker {collective.rank}: {type(exc).__name__}: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
