"""A draining stop for ``inference run-prod``: ``/readyz`` answers 503 for ``drain`` seconds before gunicorn stops.

On the first SIGTERM :class:`DrainingArbiter` sets a :class:`DrainFlag` that every worker sees, so the
balancer takes the pod out (see :func:`readiness_gate`) while everything else is still served; then
gunicorn's graceful stop. A second SIGTERM skips the rest of the drain; SIGINT and SIGQUIT stop at once.
"""

from __future__ import annotations

import json
import mmap
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.arbiter import Arbiter

__all__ = ["DrainFlag", "DrainingArbiter", "readiness_gate"]


class DrainFlag:
    """One byte of memory shared by the gunicorn master and the workers it forks: set while the server drains."""

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, 1)

    def set(self) -> None:
        """Mark the server as draining (every process sees it at once)."""
        self._memory[0] = 1

    def __bool__(self) -> bool:
        return self._memory[0] == 1


class DrainingArbiter(Arbiter):
    """gunicorn's arbiter that, on the first SIGTERM, sets ``drain_flag`` and keeps serving ``drain`` seconds before stopping."""

    drain: float = 0.0
    drain_flag: DrainFlag | None = None

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._drain_until: float | None = None

    def handle_term(self) -> None:
        if self._drain_until is None and self.drain > 0 and self.drain_flag is not None:
            self.drain_flag.set()
            self._drain_until = time.monotonic() + self.drain
            self.log.info("SIGTERM: /readyz answers 503; serving %gs more, then stopping", self.drain)
            return
        raise StopIteration

    def manage_workers(self) -> None:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.log.info("drained: stopping")
            raise StopIteration
        super().manage_workers()


def readiness_gate(wsgi_app: Callable[..., Iterable[bytes]], flag: DrainFlag, path: str = "/readyz") -> Callable[..., Iterable[bytes]]:
    """``wsgi_app``, except that ``GET path`` answers 503 ``{"status": "draining"}`` once ``flag`` is set."""
    body = json.dumps({"status": "draining"}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if flag and environ.get("PATH_INFO") == path:
            start_response("503 SERVICE UNAVAILABLE", headers)
            return [body]
        return wsgi_app(environ, start_response)

    return app
