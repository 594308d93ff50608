"""The hooks' checks, imported directly (the files are valid Python before rendering)."""

from __future__ import annotations

import pytest

from hooks.post_gen_project import KIND_DATA, remove_unchosen_ci, remove_unused_data
from hooks.pre_gen_project import check_answers, check_package_name, check_slug


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
