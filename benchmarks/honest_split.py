"""A package's validation metric next to 5-fold cross-validation, on data where most rows repeat.

For each model kind: bake a package, swap in a generated passenger list (three categorical features, about
1,300 rows, so most rows are exact repeats; see ``tests/_repeated.py``) through ``shared.py``, train it with
``run-all``, and print the promotion metric it reports on its validation rows, with its interval and its
baseline, next to the same XGBoost model's 5-fold cross-validation on all the rows::

    .venv/bin/python benchmarks/honest_split.py [--rows 1313] [--trees 60]

A split keyed on the target (what ``extract`` did before) reported an AUC of about 0.44 on such data
where cross-validation gives about 0.85.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests._repeated import cross_validated, point_shared_at, repeated  # noqa: E402

PACKAGES = {"binary": "voyage", "multiclass": "survey", "regression": "fares"}


def run_package(root: Path, package: str, args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    """The package's command, run from its folder without installing it."""
    code = f"import sys; sys.path.insert(0, '.'); sys.argv[0] = {package!r}; from {package}.start import main; main()"
    env = {**os.environ, "HML_HOME": str(home), "HML_PLATFORM": "local"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=root, env=env, capture_output=True, text=True, check=False)


def package_verdict(kind: str, rows: int, trees: int, scratch: Path) -> dict:
    """Bake, swap the data in, train; the newest version's record."""
    package = PACKAGES[kind]
    answers = [f"model_kind={kind}", f"project_name={package}", f"package_name={package}"]
    bake = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(scratch), str(ROOT), *answers]
    subprocess.run(bake, capture_output=True, text=True, check=True)  # the hook's next steps are not wanted here
    root = scratch / package
    frame, declared = repeated(kind, rows)
    frame.to_csv(root / package / "data" / "rows.csv", index=False)
    point_shared_at(root / package / "shared.py", "data/rows.csv", declared)
    home = scratch / f"home-{kind}"
    trained = run_package(root, package, ["pipelines", f"{package}_pipeline", "run-all", "--param", f"n_estimators={trees}"], home)
    if trained.returncode != 0:
        raise SystemExit(f"{kind}: run-all failed:\n{trained.stderr[-3000:]}")
    listed = run_package(root, package, ["models", "list", "--json"], home)
    return {"record": json.loads(listed.stdout)[0], "cv": cross_validated(frame, declared, kind, n_estimators=trees), "rows": len(frame)}


def target_keyed(kind: str, rows: int, trees: int) -> str:
    """The promotion metric under the split ``extract`` made before: on a hash of each row's features and target."""
    import numpy as np
    import pandas as pd
    from xgboost import XGBClassifier, XGBRegressor

    from hmlcore import hml
    from tests._repeated import OBJECTIVES, PARAMS

    frame, declared = repeated(kind, rows)
    columns = [*declared["FEATURES_CATEGORICAL"], declared["TARGET"]]
    key = (pd.util.hash_pandas_object(frame[columns], index=False).to_numpy() >> np.uint64(33)).astype(np.int64)
    validation = (key + 7 * 389) % 1000 < 200
    c = hml.ModelContainer("old", "old", [], columns[:-1], columns[-1], kind=kind, lake="unused", unknown_category="ignore")
    features, labels = c.analyze_distributions(frame[~validation]).build_training_matrix(frame[~validation])
    estimator = XGBRegressor if kind == "regression" else XGBClassifier
    c.bind_model(estimator(n_estimators=trees, objective=OBJECTIVES[kind], **PARAMS).fit(features, labels))
    verdict = c.assess(frame[validation], resamples=0)
    metric = hml.PromotionRule.from_config(None, kind=kind).metric
    return f"{metric} {verdict['metrics'][metric]:.3f} on {verdict['rows']} rows"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1313, help="rows of each generated data set")
    parser.add_argument("--trees", type=int, default=60, help="XGBoost trees, in the package and in cross-validation")
    options = parser.parse_args()
    print(f"{'kind':<11} {'metric':<9} {'package (95% interval)':<26} {'baseline':>9}   5-fold CV mean ± sd [min, max]")
    with tempfile.TemporaryDirectory(prefix="hml-honest-") as scratch:
        for kind in PACKAGES:
            got = package_verdict(kind, options.rows, options.trees, Path(scratch))
            verdict, cv = got["record"]["evaluation"], got["cv"]
            metric = cv["metric"]
            low, high = verdict["intervals"][metric]
            shown = f"{verdict['metrics'][metric]:.3f} ({low:.3f}-{high:.3f})"
            spread = f"{cv['mean']:.3f} ± {cv['std']:.3f} [{min(cv['folds']):.3f}, {max(cv['folds']):.3f}]"
            rows = f"({verdict['rows']} validation rows of {got['rows']})"
            print(f"{kind:<11} {metric:<9} {shown:<26} {verdict['baseline'][metric]:>9.3f}   {spread}   {rows}")
    print("the split keyed on the target (before):")
    for kind in PACKAGES:
        print(f"  {kind:<11} {target_keyed(kind, options.rows, options.trees)}")


if __name__ == "__main__":
    main()
