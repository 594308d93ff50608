"""The forked child: becomes the client's command, as a fresh interpreter started the same way would run it.

It takes a process group of its own (so a signal the client passes on reaches whatever the command
starts), default signal handlers (but for those the client was started ignoring, which stay ignored), the
client's standard streams (rebuilt with the client's encodings, line buffered on a terminal), working folder,
umask, resource limits, environment, ``sys.path`` and ``sys.argv``. hmlcore's modules are dropped and the
import system's caches cleared, so hmlcore and the package are imported afresh and a file added since the
server started is found; numpy's global random state is seeded anew, as in a fresh process. Then the script
or module runs as ``__main__``. At exit the child adds to ``<base>.modules`` the library modules it imported
that the server had not, for the server to import before the next command."""

from __future__ import annotations

import atexit
import importlib
import io
import os
import resource
import runpy
import signal
import sys
import tempfile
from typing import Any

from hmlcore._warm.place import Place, preloadable

__all__ = ["Command", "end_now"]

#: the exit status of the command this child ran; empty in the server
_OUTCOME: list[int] = []

_RESET = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD)


class Command:
    """One client's command, run by :meth:`run` in the child the server forked for it.

    Args:
        request: what the client sent: ``kind`` (``"path"`` or ``"module"``), ``target``, ``argv``, ``path``,
            ``cwd``, ``environ``, ``umask``, ``package``, ``stdio`` (encoding and errors of each stream), ``ignored``
            (the signals the client was started ignoring).
        fds: the client's standard input, output and error.
        place: the server's files.
        preloaded: the modules the server had imported when it forked.
    """

    def __init__(self, request: dict[str, Any], fds: list[int], place: Place, preloaded: set[str]) -> None:
        self.request, self.fds, self.place, self.preloaded = request, fds, place, preloaded

    def run(self) -> None:
        """Become the command and run it, as its interpreter would have.

        When it ends, the exit functions run (``atexit``, hence logging's flush and ``weakref.finalize``) after
        the non-daemon threads, as at any interpreter's exit; then :func:`end_now`, registered by the server
        before it imported anything, ends the process at once with the command's exit code, without tearing
        down the thousands of modules the server imported (half a second of every run: the last garbage
        collections over their objects). A command that ends by Ctrl-C ends by SIGINT, as Python does.
        """
        _OUTCOME.append(1)  # an exception nobody caught: Python prints it, then exits 1
        try:
            self._run()
        except SystemExit as exc:
            _OUTCOME[0] = _exit_code(exc.code)
            raise
        except KeyboardInterrupt:
            _OUTCOME[0] = -signal.SIGINT
            raise
        _OUTCOME[0] = 0

    def _run(self) -> None:
        request = self.request
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in _RESET:
            signal.signal(signum, signal.SIG_DFL)
        for signum in request.get("ignored", []):  # those the caller was started ignoring, as a fresh interpreter keeps them
            signal.signal(signum, signal.SIG_IGN)
        for target, fd in enumerate(self.fds):
            os.dup2(fd, target)
            os.close(fd)
        _reopen_stdio(request["stdio"], unbuffered=bool(request["environ"].get("PYTHONUNBUFFERED")))
        try:
            os.chdir(request["cwd"])
        except OSError as exc:
            raise SystemExit(f"Error: cannot enter the working folder {request['cwd']!r}: {exc.strerror}") from None
        os.umask(int(request["umask"]))
        _take_limits(request.get("limits", {}))
        _name_process(request["package"])
        os.environ.clear()
        os.environ.update(request["environ"])
        sys.path[:] = request["path"]
        sys.argv[:] = request["argv"]
        for name in [name for name in sys.modules if name == "hmlcore" or name.startswith("hmlcore.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
        tempfile.tempdir = None  # found again from this environment's TMPDIR on first use, not the server's
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()  # the legacy global generator, seeded from the OS as a fresh import seeds it
        atexit.register(self._report_modules)
        if request["kind"] == "module":
            runpy.run_module(request["target"], run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(request["target"], run_name="__main__")

    def _report_modules(self) -> None:
        names = set(preloadable(sys.modules, exclude=[self.request["package"]]))
        if names - self.preloaded:
            try:
                self.place.write_modules(names.union(self.place.read_modules()))
            except OSError:
                pass


def _take_limits(limits: dict[str, list[int]]) -> None:
    """The caller's resource limits (``ulimit``); one the server may not give (a higher hard limit) stays the server's."""
    for name, (soft, hard) in limits.items():
        number = getattr(resource, name, None)
        if number is not None and resource.getrlimit(number) != (soft, hard):
            try:
                resource.setrlimit(number, (soft, hard))
            except (OSError, ValueError):
                pass


def _name_process(package: str) -> None:
    """Name the process ``<package>-warm`` in ``ps``/``top`` (the kernel's 15-character name; its command line stays the server's)."""
    try:
        with open("/proc/self/comm", "w", encoding="utf-8") as comm:
            comm.write(f"{package}-warm"[:15])
    except OSError:
        pass


def _exit_code(code: object) -> int:
    """The exit status ``SystemExit(code)`` gives (Python prints a code that is not a number, then exits 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


def end_now() -> None:
    """At exit, in a child that ran its command: flush the standard streams and end with the command's status.

    The server registers it before it imports anything, so it is the last exit function to run; in the
    server itself it does nothing.
    """
    if not _OUTCOME:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    if _OUTCOME[0] < 0:
        signal.signal(-_OUTCOME[0], signal.SIG_DFL)
        os.kill(os.getpid(), -_OUTCOME[0])
    os._exit(_OUTCOME[0])


def _reopen_stdio(stdio: list[list[str]], *, unbuffered: bool) -> None:
    """New ``sys.stdin``/``stdout``/``stderr`` on fds 0–2, as the interpreter makes them at start-up."""
    for fd, (name, (encoding, errors)) in enumerate(zip(("stdin", "stdout", "stderr"), stdio, strict=True)):
        old = getattr(sys, name)
        if old is not None and fd > 0:
            try:
                old.flush()
            except (OSError, ValueError):
                pass
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered: io.BufferedReader | io.BufferedWriter = io.BufferedReader(raw) if fd == 0 else io.BufferedWriter(raw)
        line_buffered = fd == 2 or (fd == 1 and raw.isatty())
        stream = io.TextIOWrapper(buffered, encoding=encoding, errors=errors, line_buffering=line_buffered, write_through=unbuffered)
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)
