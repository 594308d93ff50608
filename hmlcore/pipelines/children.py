"""Steps run as child processes of the package's console script, several at once in a ``dsl.ParallelFor`` loop.

A loop's iterations run side by side (as many as its parallelism and the CPUs allow), each step in a
child process whose output goes to its log file; the first failure, in the items' order, is raised once
the iterations already running have ended.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import IO, Any

from hmlcore._machine import available_cores
from hmlcore.errors import PipelineError

__all__ = ["in_parallel", "loop_workers", "run_child"]


def loop_workers(task: dict[str, Any], items: int) -> int:
    """How many iterations of a loop run at once: its ``parallelismLimit`` (0: no limit), at most the CPUs and the items."""
    limit = int(task.get("iteratorPolicy", {}).get("parallelismLimit") or 0)
    return max(1, min(limit or items, available_cores(), items))


def in_parallel(iteration: Callable[[int, Any], dict[str, str]], items: list[Any], *, workers: int) -> list[dict[str, str]]:
    """``iteration(index, item)`` for every item, ``workers`` at a time, results in the items' order.

    The first failure (in the items' order) is raised once the iterations already running have ended;
    the ones not started yet never start.
    """
    if workers <= 1:
        return [iteration(index, item) for index, item in enumerate(items)]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hml-loop") as pool:
        futures = [pool.submit(iteration, index, item) for index, item in enumerate(items)]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def run_child(argv: list[str], *, env: dict[str, str], log: IO[str]) -> None:
    """Run ``argv`` with this process's environment plus ``env``, its output into ``log``.

    Raises:
        PipelineError: it ended with an exit code other than 0 (the message is the last line it printed: the CLI's error).
    """
    log.flush()
    code = subprocess.run(
        argv, env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False
    ).returncode
    if code != 0:
        with open(log.name, encoding="utf-8", errors="replace") as written:
            lines = [line.strip() for line in written if line.strip()]
        said = lines[-1].removeprefix("Error: ") if lines else "no output"
        raise PipelineError(f"{said} (exit code {code})")
