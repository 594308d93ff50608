"""The access log of ``inference run-prod``: gunicorn's logger, building only the atoms the server's formats use."""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger, SafeAtoms

__all__ = ["AccessLogger"]


class AccessLogger(Logger):
    """gunicorn's logger, with an access line built from the atoms the server's formats use.

    gunicorn builds ~40 atoms per request (every request and response header, every environ entry, a
    formatted date); :data:`hmlcore.serving.server.ACCESS_LOG_FORMAT` and its ``--log-query`` twin use eight.
    Values are escaped as gunicorn escapes them (:class:`gunicorn.glogging.SafeAtoms`), and an atom the
    format names but this logger does not build is written as ``-``.
    """

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.access_log_enabled:
            return
        status = resp.status
        method, protocol = environ.get("REQUEST_METHOD", "-"), environ.get("SERVER_PROTOCOL", "-")
        atoms = {
            "h": environ.get("REMOTE_ADDR", "-"),
            "m": method,
            "U": environ.get("PATH_INFO", "-"),
            "r": f"{method} {environ.get('RAW_URI', '-')} {protocol}",
            "H": protocol,
            "s": status.split(None, 1)[0] if isinstance(status, str) else status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + request_time.microseconds // 1000,
            "a": environ.get("HTTP_USER_AGENT", "-"),
        }
        try:
            self.access_log.info(self.cfg.access_log_format, SafeAtoms(atoms))
        except Exception:
            self.exception("could not write an access log line")
