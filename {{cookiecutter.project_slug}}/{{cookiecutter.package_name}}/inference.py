"""Turn encoded request features into predictions. No Flask and no Kubeflow in sight."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hmlcore import hml

if TYPE_CHECKING:
    import numpy as np


def predict(model: hml.ModelContainer, features: np.ndarray) -> list[dict[str, Any]]:
    """One answer per row, shaped by the model's kind; ``/predict`` returns what this returns.

{%- if cookiecutter.model_kind == "binary" %}

    ``{<shared.TARGET>: <class>, "probability": <probability of the second class>}``: the answer is the
    second class when its probability reaches ``shared.THRESHOLD``.
{%- elif cookiecutter.model_kind == "multiclass" %}

    ``{<shared.TARGET>: <most likely class>, "probabilities": {<class>: <probability>, ...}}``, the
    probabilities summing to 1.
{%- else %}

    ``{<shared.TARGET>: <predicted value>}``.
{%- endif %}
    Reshape the answer here: round a number, rename a field, add one.
    ``{{ cookiecutter.package_name }} inference example`` prints a request to try it with.
    """
    return model.predict(features)
