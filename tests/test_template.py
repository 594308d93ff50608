"""Bake the template with pytest-cookies and check what it writes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from hmlcore._version import __version__

from .conftest import ROOT

#: a bake from this folder pins a wheel built from it, and records the commit it came from (if it is a git checkout)
ORIGIN_FILES = {f"wheels/hmlcore-{__version__}-py3-none-any.whl"} | ({".cruft.json"} if (ROOT / ".git").exists() else set())
COMMON_FILES = ORIGIN_FILES | {
    ".dockerignore",
    ".gitignore",
    "Makefile",
    "README.md",
    "app.Dockerfile",
    "pyproject.toml",
    "tests/conftest.py",
    "tests/test_inference.py",
    "tests/test_pipeline.py",
    "tests/test_scoring.py",
    "tests/test_shared.py",
}
CODE_FILES = {"__init__.py", "inference.py", "pipeline.py", "shared.py", "start.py"}
#: the sample data each model kind ships (the post-gen hook drops the others')
KIND_DATA = {"binary": "data/nass_cds.csv.gz", "multiclass": "data/penguins.csv.gz", "regression": "data/diamonds.csv.gz"}
PACKAGE_FILES = CODE_FILES | {KIND_DATA["binary"]}
CI_FILES = {"github": {".github/workflows/ci.yml"}, "gitlab": {".gitlab-ci.yml"}, "none": set()}
UNRENDERED = re.compile(r"{{\s*cookiecutter\.|{%\s*(raw|endraw|if|for)")


#: how gunicorn and its workers run inside: not the words a data scientist serving a model needs
SERVER_INTERNALS = re.compile(r"event loop|main loop|arbiter|keepalive|poller|gthread|fork", re.IGNORECASE)
#: what a baked package's tests and code may not ask at run time: the model kind is rendered at bake time
KIND_AT_RUN_TIME = re.compile(r"MODEL_KIND\s*(==|!=|in\b)|if .*\bkind\b.*:")


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("ci", ["github", "gitlab", "none"], ids=lambda ci: f"ci={ci}")
def test_exact_file_tree_per_ci_choice(cookies, ci):
    result = cookies.bake(extra_context={"ci": ci})
    assert result.exit_code == 0, result.exception
    expected = COMMON_FILES | {f"crashed/{f}" for f in PACKAGE_FILES} | CI_FILES[ci]
    assert tree(result.project_path) == expected


@pytest.mark.parametrize("kind", ["multiclass", "regression"], ids=lambda kind: f"kind={kind}")
def test_exact_file_tree_per_model_kind(cookies, kind):
    result = cookies.bake(extra_context={"model_kind": kind})
    assert result.exit_code == 0, result.exception
    package = {"multiclass": "penguins", "regression": "diamonds"}[kind]  # the default names follow the kind
    expected = COMMON_FILES | {f"{package}/{f}" for f in CODE_FILES | {KIND_DATA[kind]}} | CI_FILES["github"]
    assert tree(result.project_path) == expected
    root = Path(result.project_path)
    shared = (root / package / "shared.py").read_text()
    assert f'MODEL_KIND = "{kind}"' in shared and f'DATA_SOURCE = "{KIND_DATA[kind]}"' in shared
    readme = (root / "README.md").read_text()
    assert f"**{kind}**" in readme
    assert "crash" not in readme.lower(), "the crash data is described only where it is shipped"
    assert "\nTHRESHOLD" not in shared and "threshold=" not in shared


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"project_name": "fraud-scores", "package_name": "fraud", "pipeline_name": "nightly", "ci": "gitlab"},
        {"model_kind": "multiclass"},
        {"model_kind": "regression", "ci": "none"},
    ],
    ids=["defaults", "renamed", "multiclass", "regression"],
)
def test_no_unrendered_template_syntax(cookies, context):
    result = cookies.bake(extra_context=context)
    assert result.exit_code == 0, result.exception
    for path in Path(result.project_path).rglob("*"):
        if path.is_file() and path.parent.name not in ("data", "wheels"):
            text = path.read_text(encoding="utf-8")
            assert not UNRENDERED.search(text), f"unrendered template syntax in {path.name}"


def test_renamed_package_uses_its_names_everywhere(cookies):
    result = cookies.bake(extra_context={"project_name": "fraud-scores", "package_name": "fraud", "pipeline_name": "nightly"})
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    assert root.name == "fraud-scores"
    assert (root / "fraud" / "start.py").exists()
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"fraud": "fraud.start:main"}
    assert pyproject["tool"]["setuptools"]["package-data"] == {"fraud": ["data/**/*"]}
    assert "def nightly(" in (root / "fraud" / "pipeline.py").read_text()
    assert "app.pipelines.register(pipeline.nightly)" in (root / "fraud" / "start.py").read_text()


@pytest.mark.parametrize("platform", ["s3", "gcp"], ids=lambda platform: f"cluster_platform={platform}")
def test_pyproject_holds_the_whole_project(cookies, platform):
    """PEP 621 metadata, the command, the extras, the data files and the tools' settings, in one file."""
    answers = {"cluster_platform": platform, "gcp_project": "acme-ml-dev" if platform == "gcp" else ""}
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    pyproject = tomllib.loads((Path(result.project_path) / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    assert project["name"] == "crashed" and project["readme"] == "README.md" and project["requires-python"] == ">=3.11"
    assert project["dynamic"] == ["version"] and pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "crashed.__version__"}
    assert project["dependencies"][0] == f"hmlcore[{platform}]=={__version__}", "the exact hmlcore, with the platform's extra"
    assert {"test", "gcp"} <= set(project["optional-dependencies"])
    assert project["scripts"] == {"crashed": "crashed.start:main"}
    assert pyproject["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert pyproject["tool"]["ruff"]["line-length"] == 140


HOSTILE = [
    'She said "hi"',
    "O'Brien's model",
    "ünïcødé — 模型",
    "trailing backslash \\",
    '""" + __import__("os").system("echo pwned") + """',
    "$HOME `id`; rm -rf / # <b>&amp;</b>",
]


@pytest.mark.parametrize("text", HOSTILE, ids=["double-quotes", "apostrophes", "unicode", "backslash", "injection", "shell-and-html"])
def test_free_text_answers_are_data(cookies, text):
    result = cookies.bake(extra_context={"description": text, "author_name": text})
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["description"] == text and project["authors"][0]["name"] == text
    yaml.safe_load((root / ".github/workflows/ci.yml").read_text(encoding="utf-8"))


BAD_ANSWERS = [
    ({"package_name": "2fast"}, "package_name '2fast' is not a valid Python package name"),
    ({"package_name": "my-model"}, "package_name 'my-model' is not a valid Python package name"),
    ({"package_name": "class"}, "package_name 'class' is a Python keyword"),
    ({"package_name": "json"}, "package_name 'json' shadows the module 'json'"),
    ({"project_slug": "Car_Crashes"}, "project_slug 'Car_Crashes' is not a DNS-1123 label"),
    ({"project_slug": "-crashes"}, "project_slug '-crashes' is not a DNS-1123 label"),
    ({"project_slug": "a" * 64}, "is not a DNS-1123 label"),
    ({"docker_image": "ghcr.io/acme/app:v1"}, "docker_image 'ghcr.io/acme/app:v1' is not an image repository"),
    ({"kfp_host": "kubeflow.local"}, "kfp_host 'kubeflow.local' is not an http(s) URL"),
    ({"gcp_region": "europe-west1"}, "gcp_region is set but gcp_project is blank"),
    ({"cluster_platform": "gcp"}, "cluster_platform is gcp but gcp_project is blank"),
    ({"gcp_project": "acme-ml-dev"}, "gcp_project is set but cluster_platform is 's3': type gcp as cluster_platform"),
]


@pytest.mark.parametrize("answers,message", BAD_ANSWERS, ids=[next(iter(a)) + "=" + next(iter(a.values()))[:12] for a, _ in BAD_ANSWERS])
def test_bad_answers_fail_with_a_message(cookies, capfd, answers, message):
    result = cookies.bake(extra_context=answers)
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "FailedHookException"
    err = capfd.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert result.project_path is None or not Path(result.project_path).exists()


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_the_baked_code_and_tests_hold_only_the_chosen_kind(cookies, kind):
    """A binary package's tests read as binary tests: the kind's code is rendered, not chosen at run time."""
    result = cookies.bake(extra_context={"model_kind": kind})
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert not KIND_AT_RUN_TIME.search(text), f"{path.relative_to(root)} asks the model kind at run time"
    others = {"binary": ["probabilities", "XGBRegressor"], "multiclass": ['"probability"', "XGBRegressor"], "regression": ["probabilit"]}
    for path in [root / "tests" / "conftest.py", next(root.glob("*/pipeline.py"))]:
        assert not [word for word in others[kind] if word in path.read_text(encoding="utf-8")], path.name


def test_the_readme_and_the_help_speak_of_requests_and_workers(cookies):
    """What a data scientist reads (the baked README, every command's --help) leaves the server's inner workings out."""
    from click.testing import CliRunner

    from hmlcore import hml

    result = cookies.bake()
    readme = (Path(result.project_path) / "README.md").read_text(encoding="utf-8")
    assert "--workers" in readme and not SERVER_INTERNALS.findall(readme)
    root = hml.HmlApp(name="zoo", package_entrypoint="zoo").cli()
    pending: list[tuple[list[str], object]] = [([], root)]
    helps = 0
    while pending:
        path, command = pending.pop()
        shown = CliRunner().invoke(root, [*path, "--help"])
        assert shown.exit_code == 0, (path, shown.output)
        assert not SERVER_INTERNALS.findall(shown.output), (path, SERVER_INTERNALS.findall(shown.output))
        helps += 1
        pending += [([*path, name], sub) for name, sub in getattr(command, "commands", {}).items()]
    assert helps > 10


def test_pipeline_py_holds_the_steps_and_their_pipelines_and_start_py_only_wires(cookies):
    """Reading files, decompressing, URLs and digests are hmlcore's (hml.read_rows); each DAG sits next to its steps."""
    result = cookies.bake()
    package = Path(result.project_path) / "crashed"
    pipeline, start = ((package / name).read_text(encoding="utf-8") for name in ("pipeline.py", "start.py"))
    imported = set(re.findall(r"^\s*(?:import|from) ([\w.]+)", pipeline, re.M))
    assert not imported & {"bz2", "gzip", "lzma", "hashlib", "urllib.parse", "urllib.request", "fsspec", "os", "re", "importlib"}
    assert "hml.read_rows(" in pipeline
    assert re.findall(r"^@hml\.pipeline\((.*)\)$", pipeline, re.M) == [
        'cron="0 0 * * *", experiment=shared.PROJECT_NAME',
        'cron="0 3 * * *", experiment=shared.PROJECT_NAME',
    ]
    assert "@hml.pipeline" not in start and "@hml.op" not in start
    assert re.findall(r"app\.pipelines\.register\(pipeline\.(\w+)\)", start) == ["crashed_pipeline", "crashed_score"]
