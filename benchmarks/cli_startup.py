"""How long ``crashed --help`` takes against a bare click hello-world, and what it imports. Prints figures; asserts nothing.

Bakes the default package into a scratch folder and runs, in fresh interpreters, alternately: a click
hello-world's ``--help`` and the baked package's ``crashed --help`` (the console script's ``main``, with
the package on ``sys.path``). For each it prints the best and median wall time, the ratio of the two
(target: ``crashed --help`` <= 2 x the hello-world), the peak RSS, and whether pandas, numpy or kfp were
imported. Compare ratios measured in the same run: the absolute times depend on what else the machine runs.

Both run with their bytecode cached, as from an installed package (a first, uncounted run writes it to a
scratch ``PYTHONPYCACHEPREFIX``): with ``PYTHONDONTWRITEBYTECODE`` set, an editable hmlcore and the baked
package would be compiled from source at every start while click is not.

    python benchmarks/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from _bake import bake_default

#: the library modules the report looks for in ``sys.modules`` after ``--help``
HEAVY = ("pandas", "numpy", "kfp")
#: prints ``--help`` and exits; then (atexit) reports the heavy modules and the peak RSS (Linux's VmHWM) as JSON on stderr
REPORT = f"""
import atexit, json, re, sys
atexit.register(lambda: print(json.dumps({{
    "imported": [name for name in {HEAVY!r} if name in sys.modules],
    "peak_rss_mib": int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) / 1024,
}}), file=sys.stderr))
"""
HELLO = """
import click

@click.command()
def hello():
    \"\"\"Say hello.\"\"\"
    click.echo("hello")

hello(["--help"])
"""
CRASHED = "import sys; sys.argv = ['crashed', '--help']\nfrom crashed.start import main\nmain()"


def run(code: str, cwd: str, env: dict[str, str], *, report: bool) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``python -c code`` in a fresh interpreter and, with ``report``, what it imported."""
    command = [sys.executable, "-c", (REPORT if report else "") + code]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "Usage:" not in done.stdout:
        raise SystemExit(f"--help failed (exit {done.returncode}):\n{done.stderr}")
    return elapsed, json.loads(done.stderr.strip().splitlines()[-1]) if report else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per command, alternating")
    args = parser.parse_args()
    project = bake_default()
    cache = tempfile.mkdtemp(prefix="hml-bench-pycache-")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"} | {"PYTHONPYCACHEPREFIX": cache}
    try:
        commands = {"click hello-world --help": HELLO, "crashed --help": CRASHED}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for code in commands.values():  # writes the bytecode and warms the file cache, not counted
            run(code, str(project), env, report=False)
        for _ in range(args.runs):
            for name, code in commands.items():
                times[name].append(run(code, str(project), env, report=False)[0])
        reports = {name: run(code, str(project), env, report=True)[1] for name, code in commands.items()}
    finally:
        shutil.rmtree(project.parent, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    print(f"{'command':<26} {'best s':>7} {'median s':>9} {'peak RSS MiB':>13}  imported")
    for name in commands:
        imported, rss = reports[name]["imported"], reports[name]["peak_rss_mib"]
        shown = ", ".join(imported) or "none of " + ", ".join(HEAVY)
        print(f"{name:<26} {min(times[name]):>7.3f} {statistics.median(times[name]):>9.3f} {rss:>13.0f}  {shown}")
    hello, crashed = times["click hello-world --help"], times["crashed --help"]
    best, median = min(crashed) / min(hello), statistics.median(crashed) / statistics.median(hello)
    paired = statistics.median(c / h for c, h in zip(crashed, hello, strict=True))
    print(f"\ncrashed --help / hello-world: {best:.2f} x (best), {median:.2f} x (median) over {args.runs} runs each (target <= 2 x)")
    print(f"median of the {args.runs} paired ratios (each run of crashed over the hello-world run just before it): {paired:.2f} x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
