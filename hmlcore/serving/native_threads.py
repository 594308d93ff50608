"""OpenMP and BLAS threads around gunicorn's fork: one in the master, each worker's share once forked.

:func:`limit_threads` runs in the master before the models load; :func:`size_native_pools` in each thread
of a forked worker (:class:`~hmlcore.serving._gunicorn.HmlWorker`).
"""

from __future__ import annotations

import os

from hmlcore._machine import available_cores

__all__ = ["NATIVE_THREAD_VARIABLES", "limit_threads", "size_native_pools"]

#: the variables native libraries read, once, when they load, for the size of their thread pools
NATIVE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def limit_threads(workers: int) -> int:
    """Keep OpenMP and BLAS on one thread in this process (gunicorn's master); return each worker's share of the cores.

    Call before the app loads its models. gunicorn loads them in its master, then forks the workers, and a
    fork keeps only the thread that called it. Per library:

    - **OpenMP** (GNU libgomp, bundled by XGBoost and scikit-learn) is not fork-safe: a thread that has
      run a parallel region on more than one thread keeps a pool, and the same thread in a forked child
      waits for pool threads that do not exist (a worker's ``/explain`` hung until gunicorn killed it). So
      the master runs every parallel region on one thread, and each worker, once forked, gives OpenMP its
      share (:func:`size_native_pools`, in every thread: libgomp keeps the setting per thread).
    - **BLAS** (OpenBLAS, bundled by NumPy) stops its threads before a fork and starts them after, but is
      kept to one thread in the master too, so that the master holds no native thread when it forks.
    - hmlcore's **metrics and monitoring threads** start on first use in each process, after the fork.

    The environment covers the libraries loaded from now on; ``threadpoolctl``, those already loaded.

    Returns:
        ``OMP_NUM_THREADS`` if set (the user's choice for each worker), else the cores divided by ``workers``.
    """
    from threadpoolctl import threadpool_limits  # only run-prod sizes the pools: --help never loads it

    configured = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    share = int(configured) if configured.isdigit() and int(configured) > 0 else max(1, available_cores() // max(1, workers))
    for name in NATIVE_THREAD_VARIABLES:
        os.environ[name] = "1"
    threadpool_limits(limits=1)
    return share


def size_native_pools(threads: int) -> None:
    """Let OpenMP and BLAS use ``threads`` threads from the calling thread on (in a forked worker: see :func:`limit_threads`)."""
    from threadpoolctl import threadpool_limits  # only run-prod sizes the pools: --help never loads it

    threadpool_limits(limits=threads)
