"""The promotion gate on data with exact repeats, beside cross-validation grouped by customer.

A generated churn table (``tests/test_gate_repeats.py``: 2,500 customers, 4,000 rows of which 1,500 repeat a
customer's row, labels yes/no, 10% of the feature values missing). A champion trained with the default
random row split (its training holds copies of validation rows), then a challenger trained honestly with
the split keyed on the customer, both published through the gate twice: with the training rows named by
identity only (what the gate matched on before value hashes, so it reproduces the old comparison), and
with their feature values (now). Printed beside them: each model's own validation AUC and the 5-fold
GroupKFold AUC by customer of the same model on all rows, which is what an honest figure should be near::

    .venv/bin/python benchmarks/gate_repeats.py [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_gate_repeats import CATEGORICAL, NUMERIC, TARGET, churn, publish  # noqa: E402


def grouped_cv(frame, folds: int = 5) -> list[float]:
    """The AUC of the same model under ``folds``-fold cross-validation grouped by customer."""
    from sklearn.model_selection import GroupKFold
    from xgboost import XGBClassifier

    from hmlcore import hml

    scores = []
    for train, test in GroupKFold(folds).split(frame, groups=frame["customer"]):
        c = hml.ModelContainer("cv", "cv", NUMERIC, CATEGORICAL, TARGET, lake="unused").analyze_distributions(frame.iloc[train])
        features, target = c.build_training_matrix(frame.iloc[train])
        c.bind_model(XGBClassifier(n_estimators=200, max_depth=6, learning_rate=0.1, random_state=0).fit(features, target))
        scores.append(c.evaluate(frame.iloc[test])["auc"])
    return scores


def main() -> None:
    import numpy as np

    from hmlcore.model.split import SplitSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="the generated table's seed")
    args = parser.parse_args()
    frame = churn(seed=args.seed)
    repeats = int(frame.drop(columns="_row_id").duplicated().sum())
    print(f"data: {len(frame)} rows, {frame['customer'].nunique()} customers, {repeats} exact repeats")
    for how, identities_only in (("identities (before)", True), ("feature values (now)", False)):
        with tempfile.TemporaryDirectory() as lake:
            champion = publish(lake, "run-1", frame, SplitSpec(), identities_only=identities_only)
            challenger = publish(lake, "run-2", frame, SplitSpec(key="customer"), identities_only=identities_only)
        print(f"\ngate matching training rows by {how}:")
        print(f"  champion (random row split) own validation auc {champion.metrics['auc']:.3f}")
        print(f"  challenger (split by customer) own validation auc {challenger.metrics['auc']:.3f}")
        print(f"  {challenger.decision.status}: {challenger.decision.reason}")
    scores = grouped_cv(frame)
    folds = ", ".join(f"{s:.3f}" for s in scores)
    print(f"\n5-fold GroupKFold by customer: auc {np.mean(scores):.3f} ± {np.std(scores, ddof=1):.3f} ({folds})")


if __name__ == "__main__":
    main()
