"""The public surface: what ``hmlcore``, ``hmlcore.hml`` and each subpackage export is exactly what they name in
``__all__``; every ``from hmlcore... import ...`` the template, the scripts and the benchmarks write still resolves;
and what using it imports: ``--help`` neither pandas, numpy nor kfp; a serving worker no pandas."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
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
    public = {name for name in dir(module) if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)}
    assert set(module.__all__) == (public - {"annotations"}) | extra
    assert all(getattr(module, name) is not None for name in module.__all__)  # each resolves, read on first use or not


def test_importing_a_layer_loads_only_that_layer_and_those_below_it():
    """``hmlcore`` and ``hmlcore.hml`` resolve their names on first use (PEP 562): a layer's import loads no other."""
    probe = (
        "import sys; import hmlcore.storage; print(sorted({'.'.join(m.split('.')[:2]) for m in sys.modules if m.startswith('hmlcore.')}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(result.stdout.replace("'", '"')) == [
        "hmlcore._env",
        "hmlcore._files",
        "hmlcore._lazy",
        "hmlcore._version",
        "hmlcore.errors",
        "hmlcore.storage",
    ]
    layers = ("hmlcore.pipelines", "hmlcore.deploy", "hmlcore.cli")
    probe = f"import sys; from hmlcore import hml; hml.ModelContainer; print(sorted(m for m in sys.modules if m.startswith({layers!r})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


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


#: an app declared as a baked package's start.py declares one (model, pipeline, inference), then its ``--help``
CLI_HELP = """
import sys
from hmlcore import hml

app = hml.HmlApp(name="zoo", package_entrypoint="zoo")
app.register_model("penguins", hml.ModelContainer("penguins", "zoo", ["flipper"], ["island"], "species", kind="multiclass"))


@hml.op()
def train(ctx: hml.OpContext, rows: int = 10) -> dict:
    return {"rows": rows}


@hml.pipeline(app.pipelines)
def training(rows: int = 10):
    train(rows=rows)


@hml.inference(app.inference)
def load(inference_app: hml.HmlInferenceApp):
    inference_app.get_model("penguins").load()


for args in (["--help"], ["pipelines", "--help"], ["inference", "run-prod", "--help"]):
    try:
        app.start(args)
    except SystemExit:
        pass
print(sorted({name.split(".")[0] for name in sys.modules} & {"pandas", "numpy", "kfp"}), file=sys.stderr)
"""


@pytest.mark.slow
def test_the_cli_help_imports_neither_pandas_nor_numpy_nor_kfp():
    result = subprocess.run([sys.executable, "-c", CLI_HELP], capture_output=True, text=True, check=True)
    assert "Usage: zoo [OPTIONS] COMMAND" in result.stdout and "run-prod" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == "[]", result.stderr


#: what ``inference run-prod`` runs before its workers fork (they inherit it): the app with the model
#: loaded and monitoring on, the gunicorn modules; then each worker's first requests. pandas is hidden
#: (``import pandas`` fails, as if it were not installed): xgboost imports scikit-learn, which imports
#: pandas when it can, so only with pandas hidden does the test see whether hmlcore's own path needs it
SERVE = """
import json, sys
sys.modules["pandas"] = None
from hmlcore import hml
import hmlcore.serving._access_log, hmlcore.serving._draining, hmlcore.serving._gunicorn, hmlcore.serving.metrics, hmlcore.serving.server

spec = json.loads(sys.argv[1])
app = hml.HmlApp(name="zoo", package_entrypoint="zoo")
app.register_model("penguins", hml.ModelContainer("penguins", "zoo", spec["numeric"], spec["categorical"], spec["target"],
                                                  kind=spec["kind"], lake=spec["lake"]))


@hml.inference(app.inference)
def load(inference_app: hml.HmlInferenceApp):
    inference_app.get_model("penguins").load()
    hml.enable_monitoring(inference_app)


client = app.inference.create_app().test_client()
statuses = [
    client.post("/predict", json=spec["record"]).status_code,
    client.post("/predict", json=[spec["record"]] * 3).status_code,
    client.get("/predict", query_string={k: v for k, v in spec["record"].items() if v is not None}).status_code,
    client.post("/predict", json={**spec["record"], "island": 3}).status_code,
]
print(json.dumps({"statuses": statuses, "xgboost": "xgboost" in sys.modules}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_a_serving_worker_needs_no_pandas(kind, tmp_path):
    from ._kinds import CATEGORICAL, NUMERIC, TARGETS, generated, trained

    trained(kind, "xgboost", tmp_path).publish(run_id="run-1", git_commit="g")
    row = generated(kind, 5, seed=3).drop(columns=[TARGETS[kind]]).iloc[1].to_dict()
    record = {k: (None if v != v else v) for k, v in row.items()}
    spec = {"kind": kind, "numeric": NUMERIC, "categorical": CATEGORICAL, "target": TARGETS[kind], "lake": str(tmp_path), "record": record}
    env = {**os.environ, "HML_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", SERVE, json.dumps(spec)], capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stderr
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served == {"statuses": [200, 200, 200, 422], "xgboost": True}


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


def _importable(module: str, name: str) -> bool:
    """Whether ``from module import name`` works: a name the module defines, or a submodule of a package."""
    if hasattr(importlib.import_module(module), name):
        return True
    try:
        return importlib.util.find_spec(f"{module}.{name}") is not None
    except ModuleNotFoundError:  # the module is no package
        return False


def test_every_name_the_template_scripts_and_benchmarks_import_from_hmlcore_exists():
    imports = _consumer_imports()
    assert ("{{cookiecutter.project_slug}}/{{cookiecutter.package_name}}/pipeline.py", "hmlcore.model.split", "ROW_ID") in imports
    missing = [f"{where}: from {module} import {name}" for where, module, name in imports if not _importable(module, name)]
    assert missing == []
