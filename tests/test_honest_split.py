"""On data where most rows repeat, a package of each kind reports what cross-validation reports, and beats its baseline.

Each kind is baked, installed, pointed (in shared.py) at a generated passenger list of about 1,300 rows with
three categorical features (see ``tests/_repeated.py``): the package's own tests must pass unmodified,
and after ``run-all`` the 5-fold cross-validated mean of the same XGBoost model must lie inside the 95%
interval the package reports for its validation metric, which must beat the baseline's. The split that
hashed each row's features and target put every repeated (features, target) group on one side and
reported an AUC of 0.44 on such data, where cross-validation gives 0.85.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hmlcore.model.promotion import PromotionRule

from ._repeated import cross_validated, point_shared_at, repeated
from .conftest import BIN, pip_install_editable, run

pytestmark = pytest.mark.slow

TREES = 60
PACKAGES = {"binary": "voyage", "multiclass": "survey", "regression": "fares"}


@pytest.mark.parametrize("kind", sorted(PACKAGES))
def test_the_package_reports_what_cross_validation_reports_and_beats_its_baseline(cookies_session, tmp_path: Path, kind: str):
    package = PACKAGES[kind]
    result = cookies_session.bake(extra_context={"model_kind": kind, "project_name": f"{package}-model", "package_name": package})
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    pip_install_editable(root)
    frame, declared = repeated(kind)
    frame.to_csv(root / package / "data" / "rows.csv", index=False)
    point_shared_at(root / package / "shared.py", "data/rows.csv", declared)

    own = run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root)
    assert own.returncode == 0, own.stdout[-4000:] + own.stderr[-2000:]

    env = {"HML_HOME": str(tmp_path / "home")}
    trained = run(
        [str(BIN / package), "pipelines", f"{package}_pipeline", "run-all", "--param", f"n_estimators={TREES}"], cwd=root, env=env
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert any(line.startswith("validation: ") and "baseline" in line for line in trained.stderr.splitlines())
    listed = run([str(BIN / package), "models", "list", "--json"], cwd=root, env=env)
    verdict = json.loads(listed.stdout)[0]["evaluation"]

    rule = PromotionRule.from_config(None, kind=kind)
    cv = cross_validated(frame, declared, kind, n_estimators=TREES)
    score, (low, high) = verdict["metrics"][rule.metric], verdict["intervals"][rule.metric]
    shown = f"{rule.metric} {score:.3f} ({low:.3f}-{high:.3f}) on {verdict['rows']} rows; 5-fold CV {cv['mean']:.3f} ± {cv['std']:.3f}"
    print(f"{kind}: {shown}; baseline {verdict['baseline'][rule.metric]:.3f}")  # recorded in the test log
    assert low <= cv["mean"] <= high, shown
    assert rule.gain(new=score, old=verdict["baseline"][rule.metric]) > 0, shown
    assert verdict["rows"] == pytest.approx(0.2 * len(frame), abs=3)
