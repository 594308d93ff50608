"""The warm interpreter of ``run-all`` (hmlcore._warm): real servers, real forks, real signals, on this machine.

Each test writes a small package (``wapp``) with a console-script-like entry file, runs ``run-all`` as a user
would (``python cli.py pipelines loop run-all``), and keeps every server in its own ``HML_CACHE_DIR``; the
fixture stops the servers and any child they forked, also when the test fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hmlcore._warm import client
from hmlcore._warm.place import Place, environment_key, preloadable
from tests._warm import alive, server_up, stop_warm_processes, wait_for, warm_env
from tests.conftest import run, start_process, stop_group

STEPS = """
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy

from hmlcore import hml

MESSAGE = "first edition"


@hml.op()
def greet() -> str:
    print(f"message: {MESSAGE}; value: {os.environ.get('WARM_TEST_VALUE')}; cwd: {os.getcwd()}", flush=True)
    print(f"open files at most: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}; temp: {tempfile.gettempdir()}", flush=True)
    if os.environ.get("WARM_TEST_FAIL"):
        raise RuntimeError("asked to fail")
    gate = os.environ.get("WARM_TEST_WAIT_FOR")
    if gate:
        print(f"waiting in process {os.getpid()}", flush=True)
        while not Path(gate).exists():
            time.sleep(0.1)
    return str(numpy.arange(3).sum())


@hml.pipeline()
def loop():
    greet()
"""

START = """
from hmlcore import hml

from wapp import steps


def main() -> None:
    app = hml.HmlApp(name="wapp", package_entrypoint="wapp")
    app.pipelines.register(steps.loop)
    app.start()
"""


@pytest.fixture
def wapp(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The package's folder and the environment its runs get; stops every warm process of the test afterwards."""
    project = tmp_path / "project"
    (project / "wapp").mkdir(parents=True)
    (project / "wapp" / "__init__.py").write_text("")
    (project / "wapp" / "steps.py").write_text(STEPS)
    (project / "wapp" / "start.py").write_text(START)
    (project / "cli.py").write_text("from wapp.start import main\n\nmain()\n")
    cache = tmp_path / "cache"
    yield project, warm_env(cache, HML_HOME=str(tmp_path / "home"), PYTHONPATH=str(project))
    stop_warm_processes(str(cache))


def run_all(project: Path, env: dict[str, str], *extra: str, **more: str) -> subprocess.CompletedProcess:
    return run(
        [sys.executable, str(project / "cli.py"), "pipelines", "loop", "run-all", "--no-cache", *extra],
        cwd=project,
        env={**env, **more},
        timeout=300,
    )


def first_run_and_its_server(project: Path, env: dict[str, str]) -> Path:
    """Run ``run-all`` once (it starts a server as it ends), wait for the server; return its pid file."""
    assert run_all(project, env).returncode == 0
    return server_up(env)


@pytest.mark.slow
def test_the_first_run_starts_a_server_and_the_next_runs_in_it_seeing_edits_the_environment_and_the_folder(wapp):
    project, env = wapp
    first = run_all(project, env, WARM_TEST_VALUE="one")
    assert first.returncode == 0, first.stderr
    assert "message: first edition; value: one" in first.stderr + first.stdout
    assert "a warm interpreter is starting for the next run-all" in first.stderr
    assert "running in a warm interpreter" not in first.stderr
    server_up(env)

    (project / "wapp" / "steps.py").write_text(STEPS.replace("first edition", "second edition"))
    elsewhere = project / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, str(project / "cli.py"), "pipelines", "loop", "run-all", "--no-cache"]
    second = run(command, cwd=elsewhere, env={**env, "WARM_TEST_VALUE": "two"})
    assert second.returncode == 0, second.stderr
    assert "running in a warm interpreter" in second.stderr
    assert f"message: second edition; value: two; cwd: {elsewhere}" in second.stderr + second.stdout
    assert "a warm interpreter is starting" not in second.stderr  # one server, started once

    limited = run(["bash", "-c", 'ulimit -S -n 321 && exec "$@"', "limited", *command], cwd=project, env=env)
    assert "running in a warm interpreter" in limited.stderr
    assert "open files at most: 321" in limited.stderr + limited.stdout  # the caller's ulimit, not the server's
    temp = project / "temp"
    temp.mkdir()
    elsewhere_temp = run(command, cwd=project, env={**env, "TMPDIR": str(temp)})
    assert "running in a warm interpreter" in elsewhere_temp.stderr
    assert f"temp: {temp}" in elsewhere_temp.stdout + elsewhere_temp.stderr


@pytest.mark.slow
def test_a_failing_command_ends_with_the_same_code_and_message_as_in_its_own_interpreter(wapp):
    project, env = wapp
    assert run_all(project, env).returncode == 0
    server_up(env)
    cold = run_all(project, env, WARM_TEST_FAIL="1", HML_WARM="false")
    warm = run_all(project, env, WARM_TEST_FAIL="1")
    assert "running in a warm interpreter" in warm.stderr
    assert warm.returncode == cold.returncode == 1
    last = [result.stderr.strip().splitlines()[-1] for result in (cold, warm)]
    assert all("RuntimeError: asked to fail" in line for line in last), last
    bad = run_all(project, env, "--param", "nope=1")
    assert bad.returncode == run_all(project, env, "--param", "nope=1", HML_WARM="false").returncode != 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "kill -9"])
def test_stopping_the_caller_stops_the_command_in_the_warm_interpreter(wapp, tmp_path: Path, how: str):
    """Ctrl-C (SIGINT to the caller) is passed on to the command; a caller killed outright gets it ended by the server."""
    project, env = wapp
    assert run_all(project, env).returncode == 0
    server_up(env)
    caller = start_process(
        [sys.executable, str(project / "cli.py"), "pipelines", "loop", "run-all", "--no-cache"],
        cwd=project,
        env={**env, "WARM_TEST_WAIT_FOR": str(tmp_path / "never")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert caller.stdout is not None
    seen = ""
    while "waiting in process" not in seen:
        line = caller.stdout.readline()
        assert line, f"the run ended before its step waited: {seen}"
        seen += line
    assert "running in a warm interpreter" in seen
    command = int(re.search(r"waiting in process (\d+)", seen).group(1))
    assert alive(command) and command != caller.pid
    if how == "ctrl-c":
        caller.send_signal(signal.SIGINT)
        assert caller.wait(timeout=60) != 0
    else:
        caller.kill()
        caller.wait(timeout=60)
    wait_for(lambda: not alive(command), "the command's end", timeout=60)
    stop_group(caller)


@pytest.mark.slow
def test_a_server_killed_outright_is_replaced_and_a_removed_socket_stops_its_server(wapp):
    project, env = wapp
    pid_file = first_run_and_its_server(project, env)
    folder = pid_file.parent
    first_server = int(pid_file.read_text())
    os.kill(first_server, signal.SIGKILL)
    wait_for(lambda: not alive(first_server), "the server's end")

    after = run_all(project, env)  # the socket is left behind, nobody listens: the run runs here and starts a new server
    assert after.returncode == 0, after.stderr
    assert "running in a warm interpreter" not in after.stderr and "a warm interpreter is starting" in after.stderr
    wait_for(lambda: pid_file.exists() and int(pid_file.read_text()) != first_server, "a new server")
    second_server = int(pid_file.read_text())
    server_up(env)
    assert "running in a warm interpreter" in run_all(project, env).stderr

    next(folder.glob("*.sock")).unlink()
    wait_for(lambda: not alive(second_server), "the server's end once its socket is gone", timeout=60)


def test_the_key_follows_the_installed_distributions_and_the_variables_libraries_read_when_loaded(tmp_path: Path):
    site = tmp_path / "site"
    site.mkdir()
    path = ["", str(site)]
    base = environment_key({"OMP_NUM_THREADS": "2", "HOME": "/a"}, path)
    assert environment_key({"OMP_NUM_THREADS": "2", "HOME": "/b", "HML_HOME": "x"}, path) == base  # no library reads those
    assert environment_key({"OMP_NUM_THREADS": "1", "HOME": "/a"}, path) != base
    assert environment_key({"OMP_NUM_THREADS": "2", "HOME": "/a"}, ["/elsewhere", str(site)]) == base  # the script's own folder
    (site / "newlib-1.0.dist-info").mkdir()
    assert environment_key({"OMP_NUM_THREADS": "2", "HOME": "/a"}, path) != base


def test_a_warm_folder_that_others_may_enter_is_never_used(tmp_path: Path):
    assert Place.find({"HML_CACHE_DIR": str(tmp_path)}, sys.path) is not None
    (tmp_path / "warm").chmod(0o777)
    assert Place.find({"HML_CACHE_DIR": str(tmp_path)}, sys.path) is None
    assert Place.find({"HML_CACHE_DIR": str(tmp_path / ("x" * 120))}, sys.path) is None  # no socket path that long


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({}, True), ({"HML_WARM": "false"}, False), ({"CI": "true"}, False), ({"CI": "true", "HML_WARM": "yes"}, True)],
    ids=["default", "HML_WARM=false", "CI", "CI and HML_WARM=yes"],
)
def test_warm_interpreters_are_on_unless_turned_off_or_in_ci(environ: dict[str, str], expected: bool):
    assert client._enabled(environ) is expected


def test_a_bad_hml_warm_value_is_one_line():
    with pytest.raises(SystemExit, match=r"^Error: HML_WARM='maybe' is not a boolean"):
        client._enabled({"HML_WARM": "maybe"})


@pytest.mark.parametrize(
    ("orig_argv", "expected"),
    [
        (["python", "/venv/bin/crashed", "pipelines"], ("path", "/venv/bin/crashed", ["/venv/bin/crashed", "pipelines"])),
        (["python", "-m", "crashed.start", "pipelines"], ("module", "crashed.start", ["crashed.start", "pipelines"])),
        (["python", "-X", "importtime", "/venv/bin/crashed"], None),
        (["python", "-c", "code", "pipelines"], None),
        (["python", "-m", "hmlcore._warm.server", "base", "1800"], None),
    ],
    ids=["console script", "-m", "interpreter option", "-c", "a warm child"],
)
def test_only_a_plain_script_or_module_is_run_warm(orig_argv, expected):
    assert client._launch(orig_argv) == expected


def test_only_libraries_are_preloaded_never_hmlcore_nor_the_package(tmp_path: Path):
    import json

    import click

    import hmlcore

    own = type(json)("wapp")
    own.__file__ = str(tmp_path / "wapp" / "__init__.py")
    chosen = preloadable({"json": json, "click": click, "hmlcore": hmlcore, "wapp": own, "crashed": click}, exclude=["crashed"])
    assert chosen == ["click", "json"]


def test_the_server_forks_no_command_for_a_client_that_stopped_waiting():
    import socket

    from hmlcore._warm.server import _gone

    waiting, server_end = socket.socketpair()
    with waiting, server_end:
        waiting.sendall(b"a whole request")
        waiting.close()  # the client gave up before the server took its request
        assert server_end.recv(100) == b"a whole request"  # the request was still there to be read...
        assert _gone(server_end)  # ...but nobody waits for its answer
    waiting, server_end = socket.socketpair()
    with waiting, server_end:
        waiting.sendall(b"a whole request")
        assert server_end.recv(100) == b"a whole request"
        assert not _gone(server_end)


@pytest.mark.slow
def test_a_server_that_refused_to_serve_is_not_started_again(wapp):
    """A server that cannot serve here (no Unix sockets on the file system, a thread at import) writes why."""
    project, env = wapp
    pid_file = first_run_and_its_server(project, env)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    next(pid_file.parent.glob("*.sock")).unlink()
    pid_file.with_suffix(".refused").write_text("cannot listen: no Unix sockets here\n")
    again = run_all(project, env)
    assert again.returncode == 0 and "a warm interpreter is starting" not in again.stderr


def test_a_command_ending_as_its_caller_goes_away_does_not_stop_the_server(tmp_path: Path):
    """Both wake the server at once: it answers the ended command once and keeps serving."""
    import selectors
    import socket

    from hmlcore._warm.server import _Job, _Server

    place = Place(str(tmp_path / "key"))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(place.socket)
    listener.listen()
    server = _Server(place, listener, os.stat(place.socket).st_ino, idle=0.0)
    command = subprocess.Popen(["true"])
    caller, server_end = socket.socketpair()
    job = _Job(command.pid, os.pidfd_open(command.pid), server_end)
    server.jobs[command.pid] = job
    server.selector.register(job.pidfd, selectors.EVENT_READ, job)
    server.selector.register(server_end, selectors.EVENT_READ, job)
    wait_for(lambda: not alive(command.pid), "the command's end")
    caller.close()  # after the command ended: the server hears of the end first, then of the caller
    assert server.serve() is None  # idle at once once the command is answered, without an error
    assert not server.jobs


@pytest.mark.slow
def test_warm_lists_the_servers_and_stops_them(wapp):
    project, env = wapp
    server = int(first_run_and_its_server(project, env).read_text())
    listed = run([sys.executable, str(project / "cli.py"), "warm"], cwd=project, env=env)
    assert listed.returncode == 0, listed.stderr
    assert re.fullmatch(rf"process {server}: key \w+, \d+ MB, up \d+ min \(this environment\)\n", listed.stdout), listed.stdout
    stopped = run([sys.executable, str(project / "cli.py"), "warm", "--stop"], cwd=project, env=env)
    assert stopped.returncode == 0 and stopped.stdout.startswith(f"stopped process {server} (key ")
    wait_for(lambda: not alive(server), "the server's end", timeout=60)
    after = run([sys.executable, str(project / "cli.py"), "warm"], cwd=project, env=env)
    assert after.stdout == "no warm interpreter runs\n"
