"""The inner loop: ``crashed pipelines crashed_pipeline run-all`` against a plain script doing the same work. Prints figures.

Bakes the default package into a scratch folder and runs, paired round by round, ``run-all`` (as the console
script runs it: ``python <script> pipelines ...``) and the plain script, each in a fresh interpreter:

- **cold (first compile too)**: ``run-all`` in an empty ``HML_HOME`` with no compiled spec kept (every step
  runs, and the pipeline is compiled with kfp first), and the plain script;
- **cold (steps only, compiled spec kept)**: ``run-all`` in an empty ``HML_HOME`` with the compiled spec of an
  earlier run in ``HML_CACHE_DIR`` (every step runs; the spec is a build product kept per user, not per
  lake: what a new lake, a CI job with a warm cache, or a clean checkout of unchanged code sees), and the plain script;
- **warm**: ``run-all --param n_estimators=N`` in a home where a run with other trees succeeded (only
  training changed: extract, analysis and matrix come from the step cache), and the plain script with N trees.

Each mode runs twice: ``run-all`` in its own interpreter (``HML_WARM=false``, as the first run of the day and
CI run it) and forked from the warm interpreter (``hmlcore._warm``) that every later ``run-all`` of the day
uses; the plain script always starts its own interpreter, as a script does.

The plain script is what a data scientist would write without the template: read the CSV, one-hot
encode the features shared.py names, hold out a random 20%, train the same XGBoost model, score the
held-out rows (AUC), save the model. Prints the median of each over ``--rounds`` rounds and the ratios
(goals: cold <= 1.3 x, warm <= 0.8 x; the cold goal is shown against both cold rows), of wall time and of
CPU time (user + system: steadier than wall time on a machine other work shares; not shown for a run forked
from the warm interpreter, whose child is not this process's). Compare ratios measured in one run: absolute
times depend on what else the machine runs. Both run with their bytecode cached (a first, uncounted run
writes it).

    python benchmarks/inner_loop.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bake import bake_default

#: the console script pip writes for the package, as a file run by path (a warm interpreter only takes plain scripts)
RUN_ALL = "from crashed.start import main\n\nmain()\n"
#: the same work without the template: {data}, {numeric}, {categorical}, {target} filled in; argv[1]: the trees, argv[2]: the output
PLAIN = """
import sys

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from xgboost import XGBClassifier

rows = pd.read_csv({data!r})[{numeric!r} + {categorical!r} + [{target!r}]].dropna(subset=[{target!r}])
features = pd.get_dummies(rows[{numeric!r} + {categorical!r}], columns={categorical!r}, dtype=float)
held_out = np.random.default_rng(0).random(len(rows)) < 0.2
model = XGBClassifier(
    n_estimators=int(sys.argv[1]), max_depth=4, learning_rate=0.05, objective="binary:logistic", tree_method="hist", random_state=0
)
model.fit(features[~held_out], rows[{target!r}][~held_out])
auc = roc_auc_score(rows[{target!r}][held_out], model.predict_proba(features[held_out])[:, 1])
model.save_model(sys.argv[2])
print(f"auc {{auc:.4f}}", file=sys.stderr)
"""


def timed(command: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, every thread) of ``command``; exits with its stderr if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def plain_script(project: Path, scratch: Path) -> Path:
    """Write the plain script for the baked package's data and features; return its path."""
    sys.path.insert(0, str(project))
    from crashed import shared  # the lists the template's steps use

    script = scratch / "plain.py"
    data = project / "crashed" / shared.DATA_SOURCE
    script.write_text(
        PLAIN.format(
            data=str(data), numeric=list(shared.FEATURES_NUMERIC), categorical=list(shared.FEATURES_CATEGORICAL), target=shared.TARGET
        ),
        encoding="utf-8",
    )
    return script


def stop_warm_servers(cache: Path) -> None:
    """SIGTERM the warm servers kept in ``cache`` (their pid files say which)."""
    for pid_file in (cache / "warm").glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            if str(cache).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():  # that server, not a process that took its pid
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass


def wait_for_warm_server(cache: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any((cache / "warm").glob("*.sock")):
        if time.monotonic() > deadline:
            raise SystemExit(f"no warm server answered in {cache} within {timeout:.0f}s: see {cache / 'warm'}/*.log")
        time.sleep(0.2)
    time.sleep(1)  # let it settle: it binds its socket once it has imported everything


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per mode (the median is printed)")
    args = parser.parse_args()
    project = bake_default()
    scratch = Path(tempfile.mkdtemp(prefix="hml-bench-loop-"))
    dropped = ("PYTHONDONTWRITEBYTECODE", "HML_HOME", "HML_CACHE", "HML_CACHE_DIR", "HML_WARM", "CI")
    base = {name: value for name, value in os.environ.items() if name not in dropped}
    base["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    base["PYTHONPATH"] = str(project)
    script = scratch / "crashed-cli.py"
    script.write_text(RUN_ALL, encoding="utf-8")
    kept = scratch / "cache-kept"  # the per-user cache of the "steps only" and "warm" runs, and the warm server's folder
    try:
        plain = plain_script(project, scratch)

        def run_all(home: Path, *extra: str, cache: Path = kept, warm: bool = False) -> tuple[float, float]:
            command = [sys.executable, str(script), "pipelines", "crashed_pipeline", "run-all", *extra]
            env = {**base, "HML_HOME": str(home), "HML_CACHE_DIR": str(cache), "HML_WARM": "true" if warm else "false"}
            return timed(command, cwd=project, env=env)

        def plain_run(trees: int) -> tuple[float, float]:
            return timed([sys.executable, str(plain), str(trees), str(scratch / "model.json")], cwd=project, env=base)

        run_all(scratch / "first", warm=True)  # writes the bytecode and the kept spec, starts the warm server: not counted
        plain_run(300)
        wait_for_warm_server(kept)
        modes = ("cold", "steps", "warm")
        times: dict[str, list[tuple[float, float]]] = {f"{mode} {who}": [] for mode in modes for who in ("run-all", "forked", "plain")}
        for round_ in range(args.rounds):
            times["cold run-all"].append(run_all(scratch / f"cold-{round_}", cache=scratch / f"cache-{round_}"))
            times["cold plain"].append(plain_run(300))
            shutil.rmtree(kept / "compiled", ignore_errors=True)  # the compiled spec only: the warm server stays
            times["cold forked"].append(run_all(scratch / f"cold-forked-{round_}", warm=True))
            times["steps run-all"].append(run_all(scratch / f"steps-{round_}"))
            times["steps plain"].append(plain_run(300))
            times["steps forked"].append(run_all(scratch / f"steps-forked-{round_}", warm=True))
            home = scratch / f"warm-{round_}"
            run_all(home)  # the run whose extract, analysis and matrix the next ones reuse
            trees = 301 + round_
            times["warm run-all"].append(run_all(home, "--param", f"n_estimators={trees}"))
            times["warm plain"].append(plain_run(trees))
            times["warm forked"].append(run_all(home, "--param", f"n_estimators={trees + 10}", warm=True))
            shown = ", ".join(f"{name} {values[-1][0]:.2f}s" for name, values in times.items())
            print(f"round {round_ + 1}: {shown}", file=sys.stderr)
    finally:
        stop_warm_servers(kept)
        shutil.rmtree(project.parent, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    wall = {name: statistics.median(v[0] for v in values) for name, values in times.items()}
    cpu = {name: statistics.median(v[1] for v in values) for name, values in times.items()}
    labels = {"cold": "cold (first compile too)", "steps": "cold (steps only, compiled spec kept)", "warm": "warm (only training changed)"}
    print(f"{'':<56} {'run-all s':>10} {'plain s':>8} {'ratio':>7} {'run-all cpu s':>14} {'plain cpu s':>12} {'cpu ratio':>10}  goal")
    for mode, goal in (("cold", 1.3), ("steps", 1.3), ("warm", 0.8)):
        plain_s, plain_cpu = wall[f"{mode} plain"], cpu[f"{mode} plain"]
        for who, where in (("run-all", "own interpreter"), ("forked", "warm interpreter")):
            run_all_s, run_all_cpu = wall[f"{mode} {who}"], cpu[f"{mode} {who}"]
            cpu_shown = (
                f" {run_all_cpu:>14.2f} {plain_cpu:>12.2f} {run_all_cpu / plain_cpu:>9.2f}x"
                if who == "run-all"
                else f" {'-':>14} {plain_cpu:>12.2f} {'-':>10}"
            )
            print(
                f"{labels[mode] + ', ' + where:<56} {run_all_s:>10.2f} {plain_s:>8.2f} {run_all_s / plain_s:>6.2f}x{cpu_shown}  <= {goal} x"
            )
    print(
        f"(median of {args.rounds} paired rounds; warm: only n_estimators changed since the last run; cpu: user + system;"
        " own interpreter: HML_WARM=false; warm interpreter: forked from hmlcore._warm's server)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
