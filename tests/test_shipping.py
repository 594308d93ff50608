"""Ship it: a baked package pins the hmlcore it was baked with, installs with no setting, keeps a safe CI and
takes template updates.

The template is reached as a user reaches it: this working tree committed and tagged in a scratch repository,
and a bare clone of that behind a ``git+file://`` URL (``released_template``, one per session). Bakes run
``cookiecutter`` in a subprocess, as a user's shell would. The installs go to one fresh virtualenv per module
(``fresh_venv``): pip there sees only the package index (and its cache), no hmlcore but the pinned one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from hmlcore._version import __version__

from .conftest import BIN, ROOT, run

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd=cwd, env=GIT_ENV, check=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def bake(template: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    """``cookiecutter --no-input template`` into ``out``, with a scratch cookiecutter config (clones land in ``out``)."""
    out.mkdir(parents=True, exist_ok=True)
    config = out / "cookiecutter-config.yaml"
    config.write_text(json.dumps({"cookiecutters_dir": str(out / "clones"), "replay_dir": str(out / "replay")}))
    result = run([str(BIN / "cookiecutter"), "--no-input", "--config-file", str(config), "-o", str(out), template, *args], cwd=out)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="session")
def released_template(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """This working tree (uncommitted changes included) committed and tagged ``v<version>``, and a bare clone of it."""
    base = tmp_path_factory.mktemp("template")
    work = base / "hml-template"
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, work / name)
    git("init", "-q", "-b", "main", cwd=work)
    commit = commit_all(work, "hml-template as tested")
    git("tag", f"v{__version__}", cwd=work)
    bare = base / "hml-template.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=base)
    return {"work": work, "bare": bare, "url": f"git+file://{bare}", "commit": commit}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A new virtualenv with a current pip, and the environment to run make in it (its bin/ first on PATH)."""
    venv = tmp_path_factory.mktemp("venv") / "user"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        # the same versions as this test environment, so that pip mostly takes them from its cache
        "PIP_CONSTRAINT": str(ROOT / "constraints.txt"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    upgrade = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], cwd=venv, env=env)
    assert upgrade.returncode == 0, upgrade.stderr
    return {"venv": venv, "env": env}


def installed_hmlcore(venv: Path) -> dict:
    """hmlcore's entry in ``pip inspect`` of ``venv``: its version and the direct URL it was installed from."""
    report = json.loads(run([str(venv / "bin" / "python"), "-m", "pip", "inspect"], cwd=venv, check=True).stdout)
    (entry,) = [item for item in report["installed"] if item["metadata"]["name"] == "hmlcore"]
    return entry


def makefile_pin(package: Path) -> str:
    (line,) = [line for line in (package / "Makefile").read_text().splitlines() if line.startswith("HMLCORE")]
    return line.split("?=", 1)[1].strip()


def pyproject_pin(package: Path) -> str:
    dependencies = tomllib.loads((package / "pyproject.toml").read_text())["project"]["dependencies"]
    (requirement,) = [line for line in dependencies if line.startswith("hmlcore")]
    return str(requirement)


@pytest.mark.slow
def test_a_bake_from_a_git_url_pins_the_commit_and_its_ci_test_job_passes_in_a_fresh_venv(
    released_template: dict, fresh_venv: dict, tmp_path: Path
):
    """A plain `pip install -e .` gets the pinned commit; then the test job's `run:` lines of the baked workflow, as
    GitHub runs them on a fresh repository (no variable set); then `make wheels` gives the image a requirements file
    pip resolves with hmlcore from its wheel, not from git."""
    result = bake(released_template["url"], tmp_path, "--checkout", f"v{__version__}")
    package = tmp_path / "car-crashes"
    commit = released_template["commit"]
    pin = f"hmlcore[s3] @ git+file://{released_template['bare']}@{commit}"
    assert makefile_pin(package) == pin
    assert pyproject_pin(package) == pin, "pyproject.toml names the same commit, for a plain pip install"
    assert f"hmlcore is pinned to file://{released_template['bare']} at {commit}" in result.stdout
    assert not (package / "wheels").exists()
    record = json.loads((package / ".cruft.json").read_text())
    assert record["template"] == f"file://{released_template['bare']}" and record["commit"] == commit
    assert record["checkout"] == f"v{__version__}" and record["context"]["cookiecutter"]["package_name"] == "crashed"

    python = str(fresh_venv["venv"] / "bin" / "python")
    plain = run([python, "-m", "pip", "install", "--quiet", "-e", "."], cwd=package, env=fresh_venv["env"], timeout=1800)
    assert plain.returncode == 0, plain.stdout[-3000:] + plain.stderr[-3000:]
    hmlcore = installed_hmlcore(fresh_venv["venv"])
    assert hmlcore["direct_url"]["url"] == f"file://{released_template['bare']}"
    assert hmlcore["direct_url"]["vcs_info"]["commit_id"] == commit

    workflow = yaml.safe_load((package / ".github/workflows/ci.yml").read_text())
    lines = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    assert lines[:3] == ['make install ${HMLCORE_OVERRIDE:+HMLCORE="$HMLCORE_OVERRIDE"}', "make lint", "make test"]
    env = {**fresh_venv["env"], "HMLCORE_OVERRIDE": "", "PYTHON_VERSION": "3.11", "IMAGE": "car-crashes"}
    for line in lines:
        step = run(["bash", "-e", "-c", line], cwd=package, env=env, timeout=1800)
        assert step.returncode == 0, f"{line}:\n{step.stdout[-3000:]}\n{step.stderr[-3000:]}"
        if line.startswith("make test"):
            assert " passed" in step.stdout
        if line.startswith("make audit"):
            assert "pip_audit" in step.stdout + step.stderr, "the audit ran (it may find nothing to ask offline)"

    hmlcore = installed_hmlcore(fresh_venv["venv"])
    assert hmlcore["metadata"]["version"] == __version__
    assert hmlcore["direct_url"]["url"] == f"file://{released_template['bare']}"
    assert hmlcore["direct_url"]["vcs_info"]["commit_id"] == commit

    wheels = run(["make", "wheels"], cwd=package, env=env, timeout=1800)
    assert wheels.returncode == 0, wheels.stdout[-3000:] + wheels.stderr[-3000:]
    requirements = (package / "build/wheels/requirements.txt").read_text().splitlines()
    assert requirements[1] == f"./hmlcore/hmlcore-{__version__}-py3-none-any.whl[s3]" and "pandas>=2.1" in requirements
    assert not any("git+" in line for line in requirements)
    # the Dockerfile's build stage (workdir build/wheels), resolved here: no conflict between two hmlcore URLs
    command = [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--requirement", "requirements.txt"]
    resolved = run(command, cwd=package / "build/wheels", env=env, timeout=1800)
    assert resolved.returncode == 0, resolved.stdout[-3000:] + resolved.stderr[-3000:]
    assert f"hmlcore-{__version__}" in resolved.stdout


@pytest.mark.slow
def test_a_bake_of_a_dirty_local_checkout_warns_and_installs_the_wheel_it_built(released_template: dict, fresh_venv: dict, tmp_path: Path):
    """A folder with an uncommitted change: the bake says so, pins a wheel of that very state, and `make install` takes it."""
    folder = tmp_path / "my-hml-template"
    shutil.copytree(released_template["work"], folder, symlinks=True)
    version_file = folder / "hmlcore" / "_version.py"
    version_file.write_text(version_file.read_text() + "# a local edit, not committed\n")
    result = bake(str(folder), tmp_path / "out")
    package = tmp_path / "out" / "car-crashes"
    assert f"WARNING: the template folder {folder} has uncommitted changes" in result.stderr
    wheel = f"wheels/hmlcore-{__version__}-py3-none-any.whl"
    assert makefile_pin(package) == wheel
    assert pyproject_pin(package) == f"hmlcore[s3]=={__version__}", "PEP 508 names no relative wheel: the Makefile does"
    with zipfile.ZipFile(package / wheel) as archive:
        assert "# a local edit, not committed" in archive.read("hmlcore/_version.py").decode()
    assert not (folder / "build").exists() and not list(folder.glob("*.egg-info")), "the bake leaves the folder as it was"

    install = run(["make", "install"], cwd=package, env=fresh_venv["env"], timeout=1800)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    hmlcore = installed_hmlcore(fresh_venv["venv"])
    assert hmlcore["direct_url"]["url"] == (package / wheel).as_uri()


@pytest.mark.slow
def test_a_template_url_make_or_a_shell_would_read_stops_the_bake_and_leaves_nothing(released_template: dict, tmp_path: Path):
    """The URL lands in the Makefile and shell lines: one with `$(...)` is refused, not quoted around."""
    hostile = tmp_path / "hml$(touch pwned).git"
    git("clone", "-q", "--bare", str(released_template["bare"]), str(hostile), cwd=tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    config = out / "config.yaml"
    config.write_text(json.dumps({"cookiecutters_dir": str(out / "clones"), "replay_dir": str(out / "replay")}))
    result = run([str(BIN / "cookiecutter"), "--no-input", "--config-file", str(config), "-o", str(out), f"git+file://{hostile}"], cwd=out)
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("ERROR: the template URL")]
    assert ours == [
        f"ERROR: the template URL 'file://{hostile}' holds characters a Makefile or a shell reads specially (or is not a git URL): "
        "bake from a plain https://, ssh:// or file:// URL"
    ]
    assert not (out / "car-crashes").exists() and not list(tmp_path.rglob("pwned"))


@pytest.mark.slow
def test_a_bake_of_a_released_tag_pins_the_version_once_releases_are_on_the_index(released_template: dict, tmp_path: Path):
    result = bake(released_template["url"], tmp_path, "--checkout", f"v{__version__}", "_hmlcore_released=true")
    assert makefile_pin(tmp_path / "car-crashes") == pyproject_pin(tmp_path / "car-crashes") == f"hmlcore[s3]=={__version__}"
    assert f"pinned to the release {__version__}" in result.stdout


@pytest.mark.slow
def test_make_update_merges_a_newer_template_and_keeps_the_users_edits(released_template: dict, tmp_path: Path):
    """Bake at A; edit shared.py and add a step, commit; template commit B changes the Makefile and the Dockerfile."""
    bare = tmp_path / "template.git"
    git("clone", "-q", "--bare", str(released_template["bare"]), str(bare), cwd=tmp_path)
    bake(f"git+file://{bare}", tmp_path / "out")
    package = tmp_path / "out" / "car-crashes"
    git("init", "-q", "-b", "main", cwd=package)
    commit_all(package, "baked")
    shared = package / "crashed" / "shared.py"
    shared.write_text(shared.read_text() + '\n#: the team\'s own constant\nOWNER = "fraud-team"\n')
    pipeline = package / "crashed" / "pipeline.py"
    step = '\n\ndef audit_rows(rows: int) -> int:\n    """Our own step: how many rows we audited."""\n    return rows\n'
    pipeline.write_text(pipeline.read_text() + step)
    commit_all(package, "our edits")

    template = tmp_path / "template-work"
    git("clone", "-q", str(bare), str(template), cwd=tmp_path)
    makefile = template / "{{cookiecutter.project_slug}}" / "Makefile"
    makefile.write_text(makefile.read_text() + "\nhello: ## a target template B added\n\t@echo hello from B\n")
    dockerfile = template / "{{cookiecutter.project_slug}}" / "app.Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'LABEL org.opencontainers.image.description="template B"\n')
    b = commit_all(template, "template B: a Makefile target and an image label")
    git("push", "-q", "origin", "main", cwd=template)

    update = run(["make", "update", f"PYTHON={sys.executable}"], cwd=package, env={"PATH": f"{BIN}:/usr/bin:/bin", **GIT_ENV})
    assert update.returncode == 0, update.stdout + update.stderr
    assert "hello from B" in (package / "Makefile").read_text()
    assert 'description="template B"' in (package / "app.Dockerfile").read_text()
    assert 'OWNER = "fraud-team"' in shared.read_text() and "def audit_rows(" in pipeline.read_text()
    assert json.loads((package / ".cruft.json").read_text())["commit"] == b
    assert makefile_pin(package) == pyproject_pin(package) == f"hmlcore[s3] @ git+file://{bare}@{b}", "the pin moves with the template"
    assert not list(package.rglob("*.rej")), "no conflict"
    hello = run(["make", "--no-print-directory", "hello"], cwd=package)
    assert hello.stdout.strip() == "hello from B"


@pytest.mark.parametrize("ci", ["github", "gitlab"])
def test_the_baked_ci_runs_zizmor_clean_and_logs_in_only_to_a_named_registry(cookies, ci: str):
    result = cookies.bake(extra_context={"ci": ci})
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    if ci == "github":
        audit = run([str(BIN / "zizmor"), "--offline", "--no-progress", "--min-severity", "medium", ".github/workflows/ci.yml"], cwd=root)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        text = (root / ".github/workflows/ci.yml").read_text()
        assert "persist-credentials: false" in text and "permissions: {}" in text
    else:
        text = (root / ".gitlab-ci.yml").read_text()
    assert 'docker login "${IMAGE%%/*}"' not in text
    assert "HMLCORE: hmlcore" not in text and "make install HMLCORE=" not in text


def test_the_repositorys_own_workflows_are_zizmor_clean():
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows, "hml-template's own CI workflow"
    audit = run([str(BIN / "zizmor"), "--offline", "--no-progress", "--min-severity", "medium", *map(str, workflows)], cwd=ROOT)
    assert audit.returncode == 0, audit.stdout + audit.stderr


@pytest.mark.slow
def test_make_dist_builds_a_release_twine_accepts_and_a_clean_venv_imports(tmp_path: Path):
    """hmlcore's sdist and wheel; the wheel alone, with only its declared dependencies, in a new virtualenv."""
    dist = tmp_path / "dist"
    env = {"PIP_CONSTRAINT": str(ROOT / "constraints.txt"), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": f"{BIN}:/usr/bin:/bin"}
    result = run(["make", "--no-print-directory", "dist", f"VENV={sys.prefix}", f"DIST={dist}", f"TAG=v{__version__}"], cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert sorted(p.name for p in dist.iterdir()) == [f"hmlcore-{__version__}-py3-none-any.whl", f"hmlcore-{__version__}.tar.gz"]
    assert result.stdout.count("PASSED") == 2, "twine check --strict passed both"
    assert f"hmlcore {__version__} imports with its declared dependencies" in result.stdout
    with zipfile.ZipFile(dist / f"hmlcore-{__version__}-py3-none-any.whl") as wheel:
        names = wheel.namelist()
    assert "hmlcore/py.typed" in names and any(name.startswith("hmlcore/templates/") for name in names)
    assert {name.split("/")[0] for name in names} == {"hmlcore", f"hmlcore-{__version__}.dist-info"}
    wrong_tag = run(["make", "--no-print-directory", "dist", f"VENV={sys.prefix}", f"DIST={dist}", "TAG=v9.9.9"], cwd=ROOT, env=env)
    assert wrong_tag.returncode != 0 and f"the tag v9.9.9 does not name hmlcore's version {__version__}" in wrong_tag.stderr
