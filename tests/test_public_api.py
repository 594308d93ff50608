"""The public surface: what ``hmlcore`` and ``hmlcore.hml`` export is exactly what they name in ``__all__``."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import hmlcore
from hmlcore import hml

SEED_NAMES = ["HmlApp", "HmlInferenceApp", "HmlInferenceDeployment", "ModelContainer", "op", "pipeline", "deploy_op", "inference"]
HEAVY = ["kfp", "flask", "kubernetes", "xgboost", "prometheus_client"]


@pytest.mark.parametrize(("module", "extra"), [(hmlcore, {"hml", "__version__"}), (hml, set())], ids=["hmlcore", "hmlcore.hml"])
def test_all_lists_every_public_name(module, extra):
    public = {name for name, value in vars(module).items() if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert set(module.__all__) == (public - {"annotations"}) | extra


def test_the_seed_decorators_and_classes_are_in_the_hml_namespace():
    assert set(SEED_NAMES + ["deploy_inference"]) <= set(hml.__all__)


def test_every_error_derives_from_hml_error():
    for name in ("ConfigError", "DeployError", "FeatureError", "ModelLoadError", "PipelineError"):
        assert issubclass(getattr(hml, name), hml.HmlError)


@pytest.mark.slow
def test_importing_hml_loads_none_of_the_heavy_libraries():
    probe = f"import sys; from hmlcore import hml; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
