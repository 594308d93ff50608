"""A local run's folder (``$HML_HOME/runs/<run-id>/``): its state, each step's output and each step's log.

``run-all`` keeps what finished here so that ``--resume <run-id>`` reruns only the rest; a step's log
(``outputs/<step>/log.txt``) holds what it printed and, if it failed, its traceback.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Iterator
from typing import IO, Any

from hmlcore._files import write_atomic
from hmlcore.errors import PipelineError

__all__ = ["RunFolder", "child_log", "new_run_id", "step_log"]


def new_run_id() -> str:
    """A fresh local run id: ``local-<UTC timestamp>-<random>``."""
    return f"local-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class RunFolder:
    """A local run's folder: ``state.json`` and one output file per finished task."""

    def __init__(self, home: str, run_id: str) -> None:
        if not re.match(r"^[A-Za-z0-9_.-]+$", run_id):
            raise PipelineError(f"invalid run id {run_id!r}")
        self.run_id = run_id
        self.path = os.path.join(home, "runs", run_id)
        self.state_path = os.path.join(self.path, "state.json")

    def exists(self) -> bool:
        return os.path.exists(self.state_path)

    def load(self) -> dict[str, Any]:
        with open(self.state_path, encoding="utf-8") as handle:
            return dict(json.load(handle))

    def save(self, state: dict[str, Any]) -> None:
        write_atomic(self.state_path, json.dumps(state, indent=2, sort_keys=True))

    def output_file(self, task: str) -> str:
        return os.path.join(self.path, "outputs", task, "output")

    def log_file(self, task: str) -> str:
        """Where ``task``'s log is kept: beside its output."""
        return os.path.join(self.path, "outputs", task, "log.txt")


class _Tee:
    """A text stream writing to the terminal's stream and to a log file."""

    def __init__(self, stream: IO[str], log: IO[str]) -> None:
        self.stream, self.log = stream, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@contextlib.contextmanager
def step_log(path: str) -> Iterator[IO[str]]:
    """Keep what a step run in this process prints (stdout, stderr, logging) in ``path`` too."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with contextlib.redirect_stdout(_Tee(sys.stdout, log)), contextlib.redirect_stderr(_Tee(sys.stderr, log)):  # type: ignore[type-var]
                yield log
        finally:
            root.removeHandler(handler)


@contextlib.contextmanager
def child_log(path: str) -> Iterator[IO[str]]:
    """The log file of a step run as a child process."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as log:
        yield log
