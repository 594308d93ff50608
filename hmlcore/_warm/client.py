"""The command's side: hand this ``run-all`` to the warm server, or run it here and start one for the next run.

:func:`run_warm` is called by :meth:`hmlcore.app.HmlApp.start` before the command line is parsed. It returns
``None`` (run here, as always) unless a warm server for this exact interpreter and environment answers; then
the server forks a child that becomes this command, with this process's working folder, environment, umask
and terminal (its standard streams, passed over the socket). This process waits, passes on the signals it
gets (Ctrl-C reaches the child's process group), and exits as the child did.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from hmlcore import _env
from hmlcore._warm.place import Place, peer_is_this_user, preloadable
from hmlcore.errors import ConfigError

__all__ = ["run_warm"]

#: the signals passed on to the command's process group while it runs
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
#: how long a warm server waits for another command before it exits, in seconds
IDLE_SECONDS = 30 * 60
#: the resource limits (``ulimit``) a command takes from its caller
_LIMITS = {
    name: getattr(resource, name)
    for name in ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_STACK")
    if hasattr(resource, name)
}
#: how long the client waits for the server to fork its command before it runs the command itself, in seconds
_ANSWER_SECONDS = 60.0
#: seconds a command whose server went away has to end after SIGTERM, before SIGKILL
_UNSEEN_SECONDS = 10.0
#: the server's module, as the client starts it
SERVER_MODULE = "hmlcore._warm.server"


def run_warm(*, package: str) -> int | None:
    """Run this process's command (``<package> pipelines <name> run-all ...``) in a warm interpreter.

    Args:
        package: the package's top-level module name; a warm server never imports it ahead.

    Returns:
        The command's exit code when a warm server ran it, or ``None`` when it must run here: warm interpreters
        are off (``HML_WARM=false``, ``CI`` set, not Linux), the command is not ``run-all``, the interpreter
        was started with options, or no server is up yet (then one is started when this process exits).

    Raises:
        SystemExit: ``HML_WARM`` holds something other than a boolean (a one-line message).
    """
    if not _enabled(os.environ) or not _is_run_all(sys.argv) or not _folder_exists():
        return None
    launch = _launch(sys.orig_argv)
    place = Place.find(os.environ, sys.path) if launch is not None else None
    if launch is None or place is None or not _stdio_open():
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(place.socket)
        if not peer_is_this_user(connection):
            raise ConnectionRefusedError(f"{place.socket} is another user's")
    except OSError:
        connection.close()
        if not _starting(place) and not os.path.exists(place.refused):
            atexit.register(_start_server, place, package)
        return None
    with connection:
        return _run_there(connection, launch, package)


def _enabled(environ: Mapping[str, str]) -> bool:
    try:
        chosen = _env.WARM.get(environ)
    except ConfigError as exc:
        raise SystemExit(f"Error: {exc}") from None
    if chosen is None:
        chosen = not environ.get("CI", "").strip()
    return bool(chosen) and sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


def _is_run_all(argv: list[str]) -> bool:
    words = argv[1:]
    return len(words) >= 3 and words[0] == "pipelines" and words[2] == "run-all" and not {"--help", "-h"} & set(words)


def _launch(orig_argv: list[str]) -> tuple[str, str, list[str]] | None:
    """How this interpreter was started: ``("path", script, argv)`` or ``("module", name, argv)``; else ``None``.

    Only the two plain forms can be repeated faithfully in a child: ``python script args`` (a console script is
    one) and ``python -m module args``. An interpreter option (``-X``, ``-W``, ``-O``...) or ``-c`` runs here, as
    does a warm server's child (its interpreter was started as the server).
    """
    words = orig_argv[1:]
    if words[:2] == ["-m", SERVER_MODULE]:
        return None  # a warm server's child: the command already runs warm
    if len(words) >= 2 and words[0] == "-m":
        return "module", words[1], [words[1], *words[2:]]
    if words and not words[0].startswith("-"):
        return "path", os.path.abspath(words[0]), words
    return None


def _folder_exists() -> bool:
    """Whether the working folder still exists (a removed one runs here, where the command may not need it)."""
    try:
        os.getcwd()
    except OSError:
        return False
    return True


def _stdio_open() -> bool:
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return False
    return True


def _starting(place: Place) -> bool:
    """Whether a server for ``place`` holds its lock (it is importing, or its socket went missing)."""
    try:
        with open(place.lock, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
    except OSError:
        return True
    return False


def _stream(stream: Any) -> list[str]:
    return [getattr(stream, "encoding", None) or "utf-8", getattr(stream, "errors", None) or "strict"]


def _run_there(connection: socket.socket, launch: tuple[str, str, list[str]], package: str) -> int | None:
    umask = os.umask(0o022)
    os.umask(umask)
    kind, target, argv = launch
    # a signal this process was started ignoring (``nohup``, a script's background job) stays ignored, as in a fresh run
    ignored = [signum for signum in _FORWARDED if signal.getsignal(signum) == signal.SIG_IGN]
    request = json.dumps(
        {
            "kind": kind,
            "target": target,
            "argv": argv,
            "path": sys.path,
            "cwd": os.getcwd(),
            "ignored": [int(signum) for signum in ignored],
            "environ": dict(os.environ),
            "umask": umask,
            "package": package,
            "limits": {name: resource.getrlimit(number) for name, number in _LIMITS.items()},
            "stdio": [_stream(sys.stdin), _stream(sys.stdout), _stream(sys.stderr)],
        }
    ).encode()
    replies = connection.makefile("rb")
    connection.settimeout(_ANSWER_SECONDS)
    try:
        socket.send_fds(connection, [struct.pack("!I", len(request))], [0, 1, 2])
        connection.sendall(request)
        started = json.loads(replies.readline() or b"{}")
    except (OSError, ValueError):  # no answer in time (a stopped server), or it went away: run here
        return None  # the server does not fork for a client that has gone
    pid = started.get("pid")
    if not isinstance(pid, int):
        return None
    connection.settimeout(None)
    print(f"hml: running in a warm interpreter (process {pid}; HML_WARM=false runs without it)", file=sys.stderr, flush=True)

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(pid, signum)
        except OSError:
            pass

    def suspend(_signum: int, _frame: object) -> None:  # Ctrl-Z: the command stops with this process, goes on with it
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGSTOP)
        os.kill(os.getpid(), signal.SIGSTOP)  # stopped here until ``fg`` or ``bg`` sends SIGCONT
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGCONT)

    previous = {signum: signal.signal(signum, forward) for signum in _FORWARDED if signum not in ignored}
    if signal.getsignal(signal.SIGTSTP) == signal.SIG_DFL:
        previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, suspend)
    try:
        ended = json.loads(replies.readline() or b"{}")
    except (OSError, ValueError):
        ended = {}
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    code = ended.get("exit")
    if not isinstance(code, int):
        _end_unseen(pid)
        print("Error: the warm interpreter stopped before the command ended (HML_WARM=false runs without it)", file=sys.stderr)
        return 1
    if code < 0:  # the command was killed by a signal: end the same way, as a shell would see it
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _end_unseen(pid: int) -> None:
    """The server went away while the command ran: end the command, which would otherwise run on unseen, its end unknown.

    Its process group gets SIGTERM, as when the caller goes away, and SIGKILL if it has not ended
    :data:`_UNSEEN_SECONDS` later.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return  # it has ended already
    try:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)
        ended, _, _ = select.select([pidfd], [], [], _UNSEEN_SECONDS)
        if not ended:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
    finally:
        os.close(pidfd)


def _start_server(place: Place, package: str) -> None:
    """At this process's exit: write what it imported and start a server that imports it (never fails the run)."""
    try:
        place.write_modules(preloadable(sys.modules, exclude=[package]))
        # appended, so an earlier server's last words (a traceback) stay readable; started afresh past 1 MiB
        mode = "wb" if os.path.exists(place.log) and os.path.getsize(place.log) > 1 << 20 else "ab"
        with open(place.log, mode) as log:
            subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE, place.base, str(IDLE_SECONDS)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=os.path.dirname(place.base),
                start_new_session=True,
            )
    except OSError:
        return
    print(
        "hml: a warm interpreter is starting for the next run-all (it stops after 30 idle minutes; HML_WARM=false turns it off)",
        file=sys.stderr,
    )
