"""Which warm interpreter a command may use, and where it lives: the key of this interpreter and environment.

A warm server is only ever used by a command whose interpreter would have started exactly like the server:
the same Python (executable, version, flags), the same ``sys.path`` after the script's own folder, the same
installed distributions (a ``pip install`` or an upgrade gives a new key, hence a new server), the same
variables that libraries read when they load (``PYTHON*``, ``OMP_*``, ``OPENBLAS_*``, ``LD_*``, the locale),
and the same code of this package. The key names the server's files in ``<cache>/warm/``, a folder only
its owner may read: ``<key>.sock`` (the socket), ``.lock``, ``.pid``, ``.modules`` (what to preload), ``.log``
and ``.refused`` (why no server can run for this key, if none can).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import site
import socket
import stat
import struct
import sys
import sysconfig
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from hmlcore import _env
from hmlcore._files import write_atomic
from hmlcore._machine import installed_distributions

__all__ = ["Place", "Server", "describe", "environment_key", "peer_is_this_user", "preloadable", "servers"]

#: bumped when client and server stop understanding each other's messages
PROTOCOL = 1
#: variables a library may read once, when it loads (so a server that loaded it with other values cannot serve)
_LOAD_TIME_PREFIXES = (
    "PYTHON",
    "LD_",
    "OMP_",
    "KMP_",
    "GOMP_",
    "MKL_",
    "OPENBLAS_",
    "BLIS_",
    "VECLIB_",
    "NUMEXPR_",
    "MALLOC_",
    "CUDA_",
    "LC_",
    "LANG",
    "TZ",
    # the libraries a model package uses that read settings when imported (scikit-learn's config, pandas' modes...)
    "SKLEARN_",
    "PANDAS_",
    "NPY_",
    "NUMPY_",
    "SCIPY_",
    "JOBLIB_",
    "MPL",
    "ARROW_",
    "XGBOOST_",
)
#: the longest socket path Linux accepts (sun_path holds 108 bytes with the terminating zero)
_MAX_SOCKET_PATH = 107


def environment_key(environ: Mapping[str, str], path: list[str]) -> str:
    """The digest of what a fresh interpreter started with ``environ`` and ``path`` would load and how.

    ``path`` is ``sys.path``; its first entry (the script's folder, or the working folder for ``-m``) is left
    out: every child sets it to the command's own.
    """
    own_code = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        own_code.update(source.name.encode() + b"\0" + source.read_bytes())
    described = {
        "protocol": PROTOCOL,
        "executable": sys.executable,
        "version": sys.version,
        "flags": repr(sys.flags),
        "warnoptions": sys.warnoptions,
        "path": path[1:],
        "installed": installed_distributions(path[1:]),
        "load-time variables": sorted((k, v) for k, v in environ.items() if k.startswith(_LOAD_TIME_PREFIXES)),
        "code": own_code.hexdigest(),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Place:
    """The files of one warm server: ``base`` + ``.sock``, ``.lock``, ``.pid``, ``.modules``, ``.log``, ``.refused``."""

    base: str

    @classmethod
    def find(cls, environ: Mapping[str, str], path: list[str]) -> Place | None:
        """The place of the server for this environment, or ``None`` if no safe one can be had.

        The folder is ``<cache>/warm`` (:func:`hmlcore._env.cache_dir`), made with mode 0700; a folder that
        another user owns or others may write, or a socket path too long for the system, gives ``None``.
        """
        folder = _folder(environ)
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            info = os.stat(folder)
        except OSError:
            return None
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            return None
        place = cls(os.path.join(folder, environment_key(environ, path)))
        return place if len(os.fsencode(place.socket)) <= _MAX_SOCKET_PATH else None

    @property
    def socket(self) -> str:
        return self.base + ".sock"

    @property
    def lock(self) -> str:
        return self.base + ".lock"

    @property
    def pid(self) -> str:
        return self.base + ".pid"

    @property
    def modules(self) -> str:
        return self.base + ".modules"

    @property
    def log(self) -> str:
        return self.base + ".log"

    def read_modules(self) -> list[str]:
        """The modules ``<base>.modules`` lists for a server to import ahead (none if there is no list yet)."""
        try:
            with open(self.modules, encoding="utf-8") as listing:
                return [line.strip() for line in listing if line.strip()]
        except OSError:
            return []

    def write_modules(self, names: Iterable[str]) -> None:
        """Replace the list of modules to import ahead with ``names``, atomically.

        Raises:
            OSError: it cannot be written.
        """
        write_atomic(self.modules, "".join(f"{name}\n" for name in sorted(set(names))))

    @property
    def refused(self) -> str:
        """Written by a server that could not serve, with the reason: clients then start no other."""
        return self.base + ".refused"


def peer_is_this_user(connection: socket.socket) -> bool:
    """Whether the process at the other end of a Unix socket runs as this user (SO_PEERCRED).

    The client sends a server its environment and terminal, and a server runs what a client sends: neither
    talks to another user's process.
    """
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return bool(struct.unpack("3i", credentials)[1] == os.getuid())


def _folder(environ: Mapping[str, str]) -> str:
    """``<cache>/warm``, absolute (a server runs in another folder than its caller)."""
    return os.path.abspath(os.path.join(_env.cache_dir(environ), "warm"))


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths}
    if site.ENABLE_USER_SITE:
        roots.add(site.getusersitepackages())
    both = {form for root in roots for form in (os.path.abspath(root), os.path.realpath(root))}
    return tuple(os.path.join(root, "") for root in both)


def preloadable(modules: Mapping[str, object], *, exclude: Iterable[str] = ()) -> list[str]:
    """The names among ``modules`` (``sys.modules``) a warm server may import ahead: the installed libraries'.

    A module qualifies when its file is in the standard library or in site-packages. hmlcore, ``__main__``
    and the top-level packages named in ``exclude`` (the package itself, were it installed there) never do,
    nor does any module whose file is elsewhere (the package's own code, installed editable): a child imports
    those afresh, so edits are seen.

    Example:
        >>> import json, hmlcore
        >>> preloadable({"json": json, "hmlcore": hmlcore})
        ['json']
    """
    roots = _library_roots()
    excluded = {"hmlcore", "__main__", "__mp_main__", *exclude}
    chosen = []
    for name, module in modules.items():
        if name.partition(".")[0] in excluded:
            continue
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.startswith(roots):  # as imported: under a sys.path entry, never resolved
            chosen.append(name)
    return sorted(chosen)


@dataclass(frozen=True)
class Server:
    """A warm server that runs: its place, process id, start time (epoch seconds) and resident memory in bytes."""

    place: Place
    pid: int
    started: float
    memory: int

    def stop(self) -> None:
        """SIGTERM it (commands it runs go on to their end) and remove its socket, so no new command reaches it."""
        with contextlib.suppress(OSError):
            os.unlink(self.place.socket)
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGTERM)


def servers(environ: Mapping[str, str]) -> list[Server]:
    """The warm servers of this user's cache folder (``environ``'s) that run, oldest first.

    A server counts when its pid file names a live process whose command line is that server's (not a
    process that took the pid of one that ended).
    """
    folder = _folder(environ)
    found = []
    for pid_file in sorted(Path(folder).glob("*.pid")):
        place = Place(str(pid_file.with_suffix("")))
        try:
            pid = int(pid_file.read_text())
            if place.base.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, ValueError):
            continue
        rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
        found.append(Server(place, pid, pid_file.stat().st_mtime, int(rss) * 1024))
    return sorted(found, key=lambda server: server.started)


def describe(server: Server, *, now: float | None = None) -> str:
    """One line for ``server``: its process, key, memory and how long it has run."""
    minutes = int(((time.time() if now is None else now) - server.started) // 60)
    return f"process {server.pid}: key {os.path.basename(server.place.base)}, {server.memory / 2**20:.0f} MB, up {minutes} min"
