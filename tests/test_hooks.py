"""The hooks' checks, imported directly (the files are valid Python before rendering)."""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from hooks.origin import (
    Origin,
    OriginError,
    clean_url,
    cruft_record,
    find_origin,
    git_requirement,
    write_makefile_pin,
    write_pyproject_pin,
)
from hooks.post_gen_project import KIND_DATA, remove_unchosen_ci, remove_unused_data
from hooks.pre_gen_project import PIPELINE_MODULE_NAMES, check_answers, check_package_name, check_slug


@pytest.mark.parametrize("name", ["crashed", "car_crashes", "model2", "_private"])
def test_good_package_names(name):
    assert check_package_name(name) is None


@pytest.mark.parametrize(
    "name,reason",
    [
        ("Crashed", "not a valid"),
        ("a b", "not a valid"),
        ("import", "keyword"),
        ("match", "keyword"),
        ("os", "shadows"),
        ("hmlcore", "shadows"),
    ],
)
def test_bad_package_names_say_why_and_what_to_type(name, reason):
    message = check_package_name(name)
    assert message is not None and reason in message and "type" in message


@pytest.mark.parametrize("slug", ["car-crashes", "a", "x1", "a" * 63])
def test_good_slugs(slug):
    assert check_slug(slug) is None


@pytest.mark.parametrize("slug", ["", "Car", "car_crashes", "car-", "a" * 64, "car.crashes"])
def test_bad_slugs(slug):
    assert "DNS-1123" in (check_slug(slug) or "")


def test_post_gen_removes_only_the_unchosen_ci(tmp_path):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("x")
    (tmp_path / ".gitlab-ci.yml").write_text("x")
    assert remove_unchosen_ci("gitlab", str(tmp_path)) == [".github"]
    assert (tmp_path / ".gitlab-ci.yml").exists() and not (tmp_path / ".github").exists()


@pytest.mark.parametrize("kind", sorted(KIND_DATA))
def test_post_gen_keeps_only_the_chosen_kinds_data(tmp_path, kind):
    data = tmp_path / "pkg" / "data"
    data.mkdir(parents=True)
    for name in [*KIND_DATA.values(), "mine.parquet"]:
        (data / name).write_bytes(b"x")
    removed = remove_unused_data(kind, "pkg", str(tmp_path))
    assert sorted(removed) == sorted(f"pkg/data/{n}" for k, n in KIND_DATA.items() if k != kind)
    assert sorted(p.name for p in data.iterdir()) == sorted([KIND_DATA[kind], "mine.parquet"])


def test_pre_gen_refuses_an_unknown_model_kind():
    answers = {
        "project_name": "car-crashes",
        "project_slug": "car-crashes",
        "package_name": "crashed",
        "model_name": "crashed",
        "pipeline_name": "crashed_pipeline",
        "docker_image": "car-crashes",
        "k8s_namespace": "kubeflow",
        "kfp_host": "",
        "cluster_platform": "s3",
        "gcp_project": "",
        "gcp_region": "",
        "model_kind": "ranking",
        "description": "d",
        "author_name": "a",
        "author_email": "you@example.com",
    }
    assert check_answers(answers) == ["model_kind 'ranking' is not a model kind: type one of binary, multiclass, regression"]
    assert check_answers({**answers, "model_kind": "regression"}) == []
    for taken in ("extract", "crashed_score"):
        assert check_answers({**answers, "model_kind": "binary", "pipeline_name": taken}) == [
            f"pipeline_name {taken!r} is taken by a step or the scoring pipeline in pipeline.py: type another name, e.g. 'crashed_pipeline'"
        ]


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_the_names_a_pipeline_name_may_not_take_are_those_the_baked_pipeline_module_defines(cookies, kind):
    """The training pipeline's function lives in pipeline.py: a pipeline_name the hook lets through replaces no other name there."""
    result = cookies.bake(extra_context={"model_kind": kind})
    assert result.exit_code == 0, result.exception
    package = {"binary": "crashed", "multiclass": "penguins", "regression": "diamonds"}[kind]
    tree = ast.parse((Path(result.project_path) / package / "pipeline.py").read_text(encoding="utf-8"))
    defined = set()
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            defined |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            defined |= {target.id for target in ast.walk(node) if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store)}
        elif isinstance(node, ast.If):  # if TYPE_CHECKING: the names type checkers see
            defined |= {(alias.asname or alias.name).split(".")[0] for n in node.body if isinstance(n, ast.Import) for alias in n.names}
    pipelines = {f"{package}_pipeline", f"{package}_score"}
    assert pipelines <= defined
    assert defined - pipelines == PIPELINE_MODULE_NAMES


# ---------------------------------------------------------------------------------- the hmlcore pin and the origin record
@pytest.mark.parametrize(
    "given,cleaned",
    [
        ("git+https://github.com/acme/hml-template.git", "https://github.com/acme/hml-template.git"),
        ("https://user:s3cret@github.com/acme/hml-template.git", "https://github.com/acme/hml-template.git"),
        ("https://ghp_token@github.com/acme/hml-template", "https://github.com/acme/hml-template"),
        ("git@github.com:acme/hml-template.git", "ssh://git@github.com/acme/hml-template.git"),
        ("ssh://git:pw@gitlab.example.com:2222/ml/hml.git", "ssh://git@gitlab.example.com:2222/ml/hml.git"),
        ("git+file:///srv/git/hml.git", "file:///srv/git/hml.git"),
    ],
)
def test_template_urls_are_cleaned_of_prefixes_and_credentials(given, cleaned):
    assert clean_url(given) == cleaned


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hml.git$(id)",
        "https://example.com/hml.git#egg=x",
        "https://example.com/a b.git",
        "https://example.com/'quoted'.git",
        "/srv/git/hml.git",
        "https://example.com/hml.git\nall:",
    ],
)
def test_a_template_url_a_shell_or_make_would_read_is_refused(url):
    with pytest.raises(OriginError, match="reads specially"):
        git_requirement(Origin(url=url, commit="a" * 40, local=False, dirty=False), "s3")


def test_the_git_pin_names_the_url_the_commit_and_the_platforms_extra():
    origin = Origin(url="https://github.com/acme/hml-template.git", commit="0123456789abcdef" * 2 + "01234567", local=False, dirty=False)
    assert git_requirement(origin, "gcp") == f"hmlcore[gcp] @ git+https://github.com/acme/hml-template.git@{origin.commit}"


def _git(*args, cwd):
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e.com"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def test_find_origin_tells_a_clean_checkout_a_dirty_one_a_plain_folder_and_a_clone(tmp_path):
    folder = tmp_path / "hml-template"
    folder.mkdir()
    (folder / "cookiecutter.json").write_text("{}")
    plain = find_origin(str(folder), folder)
    assert plain.local and plain.dirty and plain.commit is None
    _git("init", "-q", cwd=folder)
    _git("add", "-A", cwd=folder)
    _git("commit", "-q", "-m", "one", cwd=folder)
    clean = find_origin(str(folder), folder)
    assert clean.local and not clean.dirty and clean.commit and len(clean.commit) == 40
    (folder / "new.txt").write_text("x")
    assert find_origin(str(folder), folder).dirty
    clone = tmp_path / "clone"
    _git("clone", "-q", str(folder), str(clone), cwd=tmp_path)
    cloned = find_origin(f"git+file://{folder}", clone)
    assert not cloned.local and cloned.url == str(folder) and cloned.commit == clean.commit


def test_the_makefile_pin_replaces_the_one_default_and_refuses_make_syntax(tmp_path):
    makefile = tmp_path / "Makefile"
    makefile.write_text("IMAGE ?= x\nHMLCORE       ?= hmlcore[s3]==0.1.0\nPYTHON ?= python3\n")
    write_makefile_pin(makefile, "wheels/hmlcore-0.1.0-py3-none-any.whl")
    assert makefile.read_text() == "IMAGE ?= x\nHMLCORE       ?= wheels/hmlcore-0.1.0-py3-none-any.whl\nPYTHON ?= python3\n"
    for bad in ("x$(shell id)", "x # comment", "x\ny"):
        with pytest.raises(OriginError):
            write_makefile_pin(makefile, bad)


def test_the_pyproject_pin_replaces_the_hmlcore_dependency_as_toml_data_and_refuses_what_it_cannot_write(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    text = '[project]\nname = "crashed"\ndependencies = [\n    # the pin\n    "hmlcore[s3]==0.1.0",\n    "pandas>=2.1",\n]\n'
    pyproject.write_text(text)
    pin = "hmlcore[s3] @ git+https://github.com/acme/hml-template.git@" + "a" * 40
    write_pyproject_pin(pyproject, pin)
    assert pyproject.read_text() == text.replace('"hmlcore[s3]==0.1.0"', f'"{pin}"')
    for bad in ('hmlcore[s3] @ git+https://x"]\nevil = ["', "pandas==1"):
        with pytest.raises(OriginError):
            write_pyproject_pin(pyproject, bad)
    with pytest.raises(OriginError, match="no dependency line"):
        write_pyproject_pin(pyproject, pin)  # the template's line is gone now
    assert pin in pyproject.read_text()


def test_the_cruft_record_has_cruft_s_shape_and_no_paths_of_this_machine():
    context = {"project_name": "car-crashes", "_template": "gh:acme/hml-template", "_output_dir": "/home/me/out"}
    context |= {"_repo_dir": "/home/me/.cookiecutters/hml-template", "_checkout": "v0.1.0", "__prompts__": {}}
    origin = Origin(url="https://github.com/acme/hml-template.git", commit="c" * 40, local=False, dirty=False)
    record = cruft_record(context, origin)
    assert set(record) == {"template", "commit", "checkout", "context", "directory"}
    assert record["template"] == origin.url and record["commit"] == origin.commit and record["checkout"] == "v0.1.0"
    assert record["context"]["cookiecutter"] == {"project_name": "car-crashes", "_template": origin.url, "_commit": origin.commit}
