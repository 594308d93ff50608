"""The warm server: imports the libraries a ``run-all`` uses once, then forks a child for each command it is sent.

Started by the client when a run ends (``python -m hmlcore._warm.server <base> <idle seconds>``), in its own
session, with the command's environment. It takes ``<base>.lock`` (a second server for the same key exits at
once), imports the modules listed in ``<base>.modules``, and only then binds ``<base>.sock`` (mode 0600, in a
folder only its owner may enter; a connection from another user is closed unread). For each request it forks a
child (:mod:`hmlcore._warm.child`), answers ``{"pid": ...}`` and, when the child ends, ``{"exit": ...}``; if the
client goes away first, the child's process group gets SIGTERM. Between commands it imports what the last child
listed and it did not have. It never runs any computation itself, so no OpenMP or BLAS thread pool is running
when it forks (the fork-safety rule the inference server follows), and it refuses to serve if an import started
a thread. It exits after ``<idle seconds>`` without a command, when its socket file is removed or replaced, or
on SIGTERM.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hmlcore._warm.child import Command, end_now
from hmlcore._warm.place import Place, peer_is_this_user

__all__ = ["main"]

#: the largest request a client may send (its environment is most of it)
_MAX_REQUEST = 16 * 1024 * 1024
#: seconds a client has to send its whole request once connected (clients are read side by side)
_REQUEST_SECONDS = 10.0
#: seconds between two looks at the socket file and the idle time
_TICK = 5.0


@dataclass
class _Job:
    pid: int
    pidfd: int
    connection: socket.socket | None


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", file=sys.stderr, flush=True)


def _preload(place: Place) -> None:
    """Import every module ``place.modules`` lists that this process has not imported yet."""
    names = place.read_modules()
    imported = failed = 0
    for name in names:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            imported += 1
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - a module that cannot be imported ahead is imported by the child
            failed += 1
    if imported or failed:
        _log(f"imported {imported} modules ahead ({failed} could not be; {len(sys.modules)} in all)")


def _refuse(place: Place, reason: str) -> None:
    """Say in the log and in ``<base>.refused`` why no server runs here, so clients stop starting one."""
    _log(f"{reason}: exiting")
    with contextlib.suppress(OSError):
        with open(place.refused, "w", encoding="utf-8") as note:
            note.write(reason + "\n")


def _unsafe_to_fork(place: Place) -> bool:
    """Whether an import started a thread (a fork would copy its locks, not it): if so, refuse to serve here."""
    if threading.active_count() == 1:
        return False
    _refuse(place, "an import started a thread, so forking would not be safe")
    return True


def _bind(place: Place) -> tuple[socket.socket, int]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = os.path.join(os.path.dirname(place.base), f".{os.getpid()}.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(staging)
    listener.bind(staging)
    os.chmod(staging, 0o600)
    listener.listen(16)
    os.replace(staging, place.socket)  # a client never sees a socket nobody listens on yet
    return listener, os.stat(place.socket).st_ino


@dataclass
class _Arriving:
    """A client whose request is still arriving: what came of it so far, and by when the rest must have come."""

    connection: socket.socket
    deadline: float
    fds: list[int] = field(default_factory=list)
    length: int | None = None
    body: bytearray = field(default_factory=bytearray)

    def close(self) -> None:
        self.connection.close()
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []


def _read(arriving: _Arriving) -> dict[str, Any] | None:
    """Read what has come of a client's request, without waiting: the request once all of it is in, else ``None``.

    Clients are read a little at a time, side by side, so one that sends slowly or not at all holds up no other.

    Raises:
        OSError: the connection failed.
        ValueError: it is not a valid request (no file descriptors, too long, not a JSON object, the client left).
    """
    try:
        if arriving.length is None:
            header, arriving.fds, _flags, _address = socket.recv_fds(arriving.connection, 4, 3)
            if len(header) != 4 or len(arriving.fds) != 3:
                raise ValueError("no header or no file descriptors")
            (arriving.length,) = struct.unpack("!I", header)
            if arriving.length > _MAX_REQUEST:
                raise ValueError(f"a request of {arriving.length} bytes")
        while len(arriving.body) < arriving.length:
            chunk = arriving.connection.recv(min(1 << 20, arriving.length - len(arriving.body)))
            if not chunk:
                raise ValueError("the client went away")
            arriving.body += chunk
    except BlockingIOError:
        return None
    try:
        request = json.loads(arriving.body)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if not isinstance(request, dict):
        raise ValueError("not a JSON object")
    return request


def _gone(connection: socket.socket) -> bool:
    """Whether the client closed its end (a request still buffered is all that is left of it)."""
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _send(connection: socket.socket | None, message: dict[str, int]) -> None:
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.sendall(json.dumps(message).encode() + b"\n")


class _Server:
    def __init__(self, place: Place, listener: socket.socket, inode: int, idle: float) -> None:
        self.place, self.listener, self.inode, self.idle = place, listener, inode, idle
        self.selector = selectors.DefaultSelector()
        self.selector.register(listener, selectors.EVENT_READ, None)
        self.jobs: dict[int, _Job] = {}
        self.arriving: list[_Arriving] = []
        self.last = time.monotonic()
        self.stopping = False

    def serve(self) -> Command | None:
        """Serve until idle; returns a :class:`Command` only in a forked child, which runs it."""
        while True:
            now = time.monotonic()
            for key, _events in self.selector.select(timeout=min([_TICK, *(max(0.0, a.deadline - now) for a in self.arriving)])):
                if key.data is None:
                    self._accept()
                elif isinstance(key.data, _Arriving):
                    command = self._arrived(key.data)
                    if command is not None:
                        return command
                elif key.fileobj == key.data.pidfd:
                    if key.data.pid in self.jobs:
                        self._finish(key.data)
                else:
                    self._client_readable(key.data)
            for late in [a for a in self.arriving if a.deadline <= time.monotonic()]:
                _log(f"a request was refused: not all of it came within {_REQUEST_SECONDS:g}s")
                self._drop(late)
            if self.stopping and not self.jobs:
                break
            if self.jobs:
                self.last = time.monotonic()
            elif time.monotonic() - self.last > self.idle:
                _log("idle: exiting")
                break
            if not self._socket_is_ours():
                _log("the socket file was removed or replaced: exiting")
                break
        self.close()
        with contextlib.suppress(OSError):
            if self._socket_is_ours():
                os.unlink(self.place.socket)
        return None

    def close(self) -> None:
        self.selector.close()
        self.listener.close()
        for arriving in self.arriving:
            arriving.close()
        for job in self.jobs.values():
            os.close(job.pidfd)
            if job.connection is not None:
                job.connection.close()

    def _socket_is_ours(self) -> bool:
        try:
            return os.stat(self.place.socket).st_ino == self.inode
        except OSError:
            return False

    def _accept(self) -> None:
        """Take a new client; its request is read by :meth:`_arrived` as it comes (within ``_REQUEST_SECONDS``)."""
        try:
            connection, _ = self.listener.accept()
        except OSError:
            return
        if not peer_is_this_user(connection):
            connection.close()
            return
        connection.setblocking(False)
        arriving = _Arriving(connection, time.monotonic() + _REQUEST_SECONDS)
        self.arriving.append(arriving)
        self.selector.register(connection, selectors.EVENT_READ, arriving)

    def _drop(self, arriving: _Arriving) -> None:
        self.selector.unregister(arriving.connection)
        self.arriving.remove(arriving)
        arriving.close()

    def _arrived(self, arriving: _Arriving) -> Command | None:
        """Read more of a client's request; once it is all in, fork its command (in the child: return it)."""
        try:
            request = _read(arriving)
        except (OSError, ValueError) as exc:
            _log(f"a request was refused: {exc}")
            self._drop(arriving)
            return None
        if request is None:
            return None
        if _gone(arriving.connection):  # it stopped waiting (a server stopped for a while) and ran the command itself
            self._drop(arriving)
            return None
        if _unsafe_to_fork(self.place):  # an import between two commands started a thread: the client runs it itself
            self._drop(arriving)
            self.stopping = True
            return None
        self.selector.unregister(arriving.connection)
        self.arriving.remove(arriving)
        connection, fds = arriving.connection, arriving.fds
        connection.setblocking(True)
        pid = os.fork()
        if pid == 0:  # the child: drop everything of the server's, then become the command
            connection.close()
            self.close()
            return Command(request, fds, self.place, set(sys.modules))
        with contextlib.suppress(OSError):  # the child does it too; either may run first, and a signal may come at once
            os.setpgid(pid, pid)
        for fd in fds:
            os.close(fd)
        job = _Job(pid, os.pidfd_open(pid), connection)
        self.jobs[pid] = job
        self.selector.register(job.pidfd, selectors.EVENT_READ, job)
        self.selector.register(connection, selectors.EVENT_READ, job)
        _send(connection, {"pid": pid})
        return None

    def _client_readable(self, job: _Job) -> None:
        if job.connection is None or job.pid not in self.jobs:  # the command ended in the same wake-up: answered already
            return
        try:
            data = job.connection.recv(1024)
        except OSError:
            data = b""
        if data:
            return
        # the client went away before the command ended: end the command, as closing its terminal would
        self.selector.unregister(job.connection)
        job.connection.close()
        job.connection = None
        with contextlib.suppress(OSError):
            os.killpg(job.pid, signal.SIGTERM)

    def _finish(self, job: _Job) -> None:
        _pid, status = os.waitpid(job.pid, 0)
        self.selector.unregister(job.pidfd)
        os.close(job.pidfd)
        if job.connection is not None:
            self.selector.unregister(job.connection)
            _send(job.connection, {"exit": os.waitstatus_to_exitcode(status)})
            job.connection.close()
            job.connection = None
        del self.jobs[job.pid]
        self.last = time.monotonic()
        if not self.jobs:
            _preload(self.place)


def main(argv: list[str]) -> Command | None:
    """Run the server for ``argv[1]`` (the place's base) with ``argv[2]`` idle seconds; in a child, the command."""
    place, idle = Place(argv[1]), float(argv[2])
    atexit.register(end_now)  # before any library registers its own: end_now runs after all of them
    lock = open(place.lock, "a")  # noqa: SIM115 - held for the server's whole life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _log("another server holds the lock: exiting")
        return None
    _preload(place)
    if _unsafe_to_fork(place):
        return None
    try:
        listener, inode = _bind(place)
    except OSError as exc:  # e.g. a cache folder on a file system without Unix sockets
        _refuse(place, f"cannot listen on {place.socket}: {exc.strerror}")
        return None
    with open(place.pid, "w") as pid_file:
        pid_file.write(f"{os.getpid()}\n")
    _log(f"serving on {place.socket}")
    command = _Server(place, listener, inode, idle).serve()
    if command is None:
        with contextlib.suppress(OSError):
            os.unlink(place.pid)
    lock.close()
    return command


if __name__ == "__main__":
    _command = main(sys.argv)
    if _command is not None:
        _command.run()
