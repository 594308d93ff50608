"""The public surface: what ``hmlcore``, ``hmlcore.hml`` and each subpackage export is exactly what they name in
``__all__``, and every ``from hmlcore... import ...`` the template, the scripts and the benchmarks write still resolves."""

from __future__ import annotations

import importlib
import pathlib
import re
import subprocess
import sys
import types

import pytest

import hmlcore
from hmlcore import hml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUBPACKAGES = ["cli", "deploy", "model", "pipelines", "serving", "storage"]
#: where code outside hmlcore imports it: the baked package, the repo's scripts and benchmarks
CONSUMERS = ["{{cookiecutter.project_slug}}", "scripts", "benchmarks"]
IMPORT_LINE = re.compile(r"^\s*from (hmlcore(?:\.\w+)*) import ([\w, ]+?)\s*(?:#.*)?$", re.M)

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


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_says_what_it_holds_and_exports_a_short_all(name):
    package = importlib.import_module(f"hmlcore.{name}")
    assert package.__doc__ and package.__doc__.strip()
    public = {key for key, value in vars(package).items() if not key.startswith("_") and not isinstance(value, types.ModuleType)}
    assert set(package.__all__) == public - {"annotations"}
    assert 1 <= len(package.__all__) <= 8


def test_the_subpackages_export_the_same_objects_as_the_hml_namespace():
    shared = {
        name: getattr(importlib.import_module(f"hmlcore.{package}"), name)
        for package in SUBPACKAGES
        for name in importlib.import_module(f"hmlcore.{package}").__all__
        if name in hml.__all__
    }
    assert {"HmlInferenceDeployment", "HmlOp", "HmlPipeline", "ModelContainer", "enable_monitoring"} <= set(shared)
    assert all(value is getattr(hml, name) for name, value in shared.items())


def _consumer_imports() -> list[tuple[str, str, str]]:
    found = []
    for folder in CONSUMERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for module, names in IMPORT_LINE.findall(path.read_text(encoding="utf-8")):
                found += [(str(path.relative_to(ROOT)), module, name.strip()) for name in names.split(",") if name.strip()]
    return found


def test_every_name_the_template_scripts_and_benchmarks_import_from_hmlcore_exists():
    imports = _consumer_imports()
    assert ("{{cookiecutter.project_slug}}/{{cookiecutter.package_name}}/pipeline.py", "hmlcore.storage", "Warehouse") in imports
    missing = [
        f"{where}: from {module} import {name}" for where, module, name in imports if not hasattr(importlib.import_module(module), name)
    ]
    assert missing == []
