"""Turn encoded request features into predictions. No Flask and no Kubeflow in sight."""

from __future__ import annotations

from typing import Any

import numpy as np
from hmlcore import hml

from {{ cookiecutter.package_name }} import shared


def predict_dead(model: hml.ModelContainer, features: np.ndarray) -> list[dict[str, Any]]:
    """The probability that each occupant died, and the verdict at :data:`shared.THRESHOLD`."""
    probabilities = model.predict_proba(features)[:, 1]
    return [{"dead_probability": round(float(p), 6), "dead": bool(p >= shared.THRESHOLD)} for p in probabilities]
