"""Every command the baked package's README shows, run as a reader would run it.

The first block's `python -m venv` and `make install` are exercised in a fresh virtualenv by
test_product.test_fresh_virtualenv_follows_the_readme_and_the_image_recipe.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import BIN, free_port, run, start_process, wait_ready

pytestmark = pytest.mark.slow

#: run by other tests: a fresh venv's install (test_product, test_shipping) and `make update` in a git repository (test_shipping)
COVERED_ELSEWHERE = {"python -m venv .venv && . .venv/bin/activate", "make install", "git status", "git diff"}


def readme_commands(readme: str) -> list[str]:
    """The commands in the README's ``sh`` blocks and its inline ``crashed ...`` commands, comments dropped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", readme, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                commands.append(line)
    commands += [c for c in re.findall(r"`(crashed [^`]+)`", readme) if c not in commands]
    return commands


def test_every_readme_command_works(baked_default: Path, tmp_path: Path):
    commands = readme_commands((baked_default / "README.md").read_text())
    assert len(commands) >= 12
    # the README's "use your own data" file: rows of the shipped data, as a plain CSV somewhere else
    own = tmp_path / "my.csv"
    pd.read_csv(baked_default / "crashed" / "data" / "nass_cds.csv.gz").sample(3000, random_state=1).to_csv(own, index=False)
    port = free_port()
    env = {**os.environ, "HML_HOME": str(tmp_path / "home"), "HML_PORT": str(port), "PATH": f"{BIN}:{os.environ['PATH']}"}
    server = None
    done = set()
    try:
        for command in commands:
            if command in COVERED_ELSEWHERE:
                done.add(command)
                continue
            if command.endswith(("inference run-dev", "inference run-prod")):
                _stop(server)
                server = start_process(shlex.split(command), cwd=baked_default, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                wait_ready(f"http://127.0.0.1:{port}/readyz", server)
            elif command.startswith("curl "):  # through a shell: the request comes from `crashed inference example`
                line = command.replace("127.0.0.1:8000", f"127.0.0.1:{port}") + " --silent --fail-with-body"
                result = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60, env=env, cwd=baked_default)
                assert result.returncode == 0, result.stdout + result.stderr
                assert '"dead"' in result.stdout and '"probability"' in result.stdout
            elif command.startswith("make "):
                name = command.split()[1]
                args = ["TAG=abc123"] + ([] if name == "compile" else ["-n"])
                result = run(
                    ["make", "--no-print-directory", f"PYTHON={sys.executable}", *shlex.split(command)[1:], *args],
                    cwd=baked_default,
                    env=env,
                )
                assert result.returncode == 0, command + "\n" + result.stderr
            elif command.startswith("crashed "):
                argv = shlex.split(command.replace("<step>", "train_model").replace("/data/my.csv", str(own)))
                result = run(argv, cwd=baked_default, env=env)
                assert result.returncode == 0, command + "\n" + result.stderr
            else:
                raise AssertionError(f"README command with no test: {command}")
            done.add(command)
    finally:
        _stop(server)
    assert done == set(commands)


def _stop(server: subprocess.Popen | None) -> None:
    if server is not None and server.poll() is None:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
