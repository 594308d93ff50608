"""The inner loop: ``crashed pipelines crashed_pipeline run-all`` against a plain script doing the same work. Prints figures.

Bakes the default package into a scratch folder and runs, in fresh interpreters, paired round by round:

- **cold (first compile too)**: ``run-all`` in an empty ``HML_HOME`` and an empty ``HML_CACHE_DIR`` (every
  step runs, and the pipeline is compiled with kfp first), and the plain script;
- **cold (steps only, compiled spec kept)**: ``run-all`` in an empty ``HML_HOME`` with the compiled spec of an
  earlier run in ``HML_CACHE_DIR`` (every step runs; the spec is a build product kept per user, not per
  lake: what a new lake, a CI job with a warm cache, or a clean checkout of unchanged code sees), and the plain script;
- **warm**: ``run-all --param n_estimators=N`` in a home where a run with other trees succeeded (only
  training changed: extract, analysis and matrix come from the step cache), and the plain script with N trees.

The plain script is what a data scientist would write without the template: read the CSV, one-hot
encode the features shared.py names, hold out a random 20%, train the same XGBoost model, score the
held-out rows (AUC), save the model. Prints the median of each over ``--rounds`` rounds and the ratios
(goals: cold <= 1.3 x, warm <= 0.8 x; the cold goal is shown against both cold rows), of wall time and of
CPU time (user + system: steadier than wall time on a machine other work shares). Compare ratios
measured in one run: absolute times depend on what else the machine runs. Both run with their bytecode
cached (a first, uncounted run writes it).

    python benchmarks/inner_loop.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bake import bake_default

RUN_ALL = "import sys; sys.argv = ['crashed', *sys.argv[1:]]\nfrom crashed.start import main\nmain()"
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds per mode (the median is printed)")
    args = parser.parse_args()
    project = bake_default()
    scratch = Path(tempfile.mkdtemp(prefix="hml-bench-loop-"))
    dropped = ("PYTHONDONTWRITEBYTECODE", "HML_HOME", "HML_CACHE", "HML_CACHE_DIR")
    base = {name: value for name, value in os.environ.items() if name not in dropped}
    base["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    try:
        plain = plain_script(project, scratch)

        kept = scratch / "cache-kept"  # the per-user cache of the "steps only" and "warm" runs

        def run_all(home: Path, *extra: str, cache: Path = kept) -> tuple[float, float]:
            command = [sys.executable, "-c", RUN_ALL, "pipelines", "crashed_pipeline", "run-all", *extra]
            return timed(command, cwd=project, env={**base, "HML_HOME": str(home), "HML_CACHE_DIR": str(cache)})

        def plain_run(trees: int) -> tuple[float, float]:
            return timed([sys.executable, str(plain), str(trees), str(scratch / "model.json")], cwd=project, env=base)

        run_all(scratch / "first")  # writes the bytecode, the kept spec, and warms the file cache, not counted
        plain_run(300)
        times: dict[str, list[tuple[float, float]]] = {
            "cold run-all": [],
            "cold plain": [],
            "steps run-all": [],
            "steps plain": [],
            "warm run-all": [],
            "warm plain": [],
        }
        for round_ in range(args.rounds):
            times["cold run-all"].append(run_all(scratch / f"cold-{round_}", cache=scratch / f"cache-{round_}"))
            times["cold plain"].append(plain_run(300))
            times["steps run-all"].append(run_all(scratch / f"steps-{round_}"))
            times["steps plain"].append(plain_run(300))
            home = scratch / f"warm-{round_}"
            run_all(home)  # the run whose extract, analysis and matrix the next one reuses
            trees = 301 + round_
            times["warm run-all"].append(run_all(home, "--param", f"n_estimators={trees}"))
            times["warm plain"].append(plain_run(trees))
            shown = ", ".join(f"{name} {values[-1][0]:.2f}s (cpu {values[-1][1]:.2f}s)" for name, values in times.items())
            print(f"round {round_ + 1}: {shown}", file=sys.stderr)
    finally:
        shutil.rmtree(project.parent, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    wall = {name: statistics.median(v[0] for v in values) for name, values in times.items()}
    cpu = {name: statistics.median(v[1] for v in values) for name, values in times.items()}
    labels = {"cold": "cold (first compile too)", "steps": "cold (steps only, compiled spec kept)", "warm": "warm"}
    print(f"{'':<38} {'run-all s':>10} {'plain s':>8} {'ratio':>7} {'run-all cpu s':>14} {'plain cpu s':>12} {'cpu ratio':>10}  goal")
    for mode, goal in (("cold", 1.3), ("steps", 1.3), ("warm", 0.8)):
        run_all_s, plain_s = wall[f"{mode} run-all"], wall[f"{mode} plain"]
        run_all_cpu, plain_cpu = cpu[f"{mode} run-all"], cpu[f"{mode} plain"]
        print(
            f"{labels[mode]:<38} {run_all_s:>10.2f} {plain_s:>8.2f} {run_all_s / plain_s:>6.2f}x"
            f" {run_all_cpu:>14.2f} {plain_cpu:>12.2f} {run_all_cpu / plain_cpu:>9.2f}x  <= {goal} x"
        )
    print(f"(median of {args.rounds} paired rounds; warm: only n_estimators changed since the last run; cpu: user + system)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
