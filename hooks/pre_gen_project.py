"""Refuse answers that would bake a broken package, before anything is written.

Each answer is read as data (a JSON string rendered by cookiecutter), never pasted into code. A bad
answer prints one line saying what to type instead, and the hook exits 1.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
IMAGE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
GCP_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]$")
# a plain URL: nothing a shell, make or YAML reads specially (no quotes, spaces, $, #, backticks, credentials)
URL = re.compile(r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[A-Za-z0-9._~%/-]*)?$")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# longer names would push the lines they land on past the baked package's line length (ruff: 140)
MAX_LENGTH = {"package_name": 30, "model_name": 40, "pipeline_name": 40, "docker_image": 90}
# free text: any characters, on one line (a line break or a control character would end a line in the Makefile,
# a YAML or TOML file, or a docstring)
FREE_TEXT = ("project_name", "description", "author_name", "author_email")
NOT_ONE_LINE = {"Cc", "Cs", "Zl", "Zp"}
RESERVED_PACKAGES = {"hmlcore", "test", "tests", "setup", "site"}
MODEL_KINDS = ("binary", "multiclass", "regression")
# the names the baked pipeline.py defines or imports beside the training pipeline's function, which a
# pipeline_name equal to one of them would replace (tests/test_hooks.py checks the list against the file)
PIPELINE_MODULE_NAMES = {
    "annotations", "io", "sys", "TYPE_CHECKING", "pd", "hml", "scoring", "ROW_ID", "SplitSpec", "row_ids", "validation_mask", "values_ids",
    "report", "inference", "shared", "TRAINING_TABLE", "VALIDATION_TABLE", "VALIDATION", "split_sql", "extract", "read_split",
    "analyze_features", "build_training_matrix", "train_model", "evaluate_model", "publish_model", "plan_scoring",
    "model_in_service", "score_shard", "write_predictions", "_load_model",
}  # fmt: skip


def check_package_name(name: str) -> str | None:
    """Return why ``name`` cannot be the package name, or None."""
    if len(name) > MAX_LENGTH["package_name"]:
        return f"package_name {name!r} is longer than {MAX_LENGTH['package_name']} characters: type a shorter name, e.g. 'crashed'"
    if not IDENTIFIER.match(name):
        return f"package_name {name!r} is not a valid Python package name: type lower-case letters, digits and '_', e.g. 'crashed'"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"package_name {name!r} is a Python keyword: type another name, e.g. '{name}_model'"
    if name in sys.stdlib_module_names or name in RESERVED_PACKAGES:
        return f"package_name {name!r} shadows the module {name!r}: type another name, e.g. '{name}_model'"
    return None


def check_slug(slug: str) -> str | None:
    """Return why ``slug`` cannot be the project slug (a DNS-1123 label), or None."""
    if not DNS_LABEL.match(slug):
        return (
            f"project_slug {slug!r} is not a DNS-1123 label (it names Kubernetes objects): "
            "type lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63, e.g. 'car-crashes'"
        )
    return None


def check_answers(answers: dict[str, str]) -> list[str]:
    """Every problem with ``answers``, one line each."""
    problems = []
    for check, key in ((check_slug, "project_slug"), (check_package_name, "package_name")):
        problem = check(answers[key])
        if problem:
            problems.append(problem)
    for key in ("model_name", "pipeline_name", "docker_image"):
        if len(answers[key]) > MAX_LENGTH[key]:
            problems.append(f"{key} {answers[key][:20]!r}... is longer than {MAX_LENGTH[key]} characters: type a shorter one")
    for key in ("model_name", "pipeline_name"):
        if not IDENTIFIER.match(answers[key]) or keyword.iskeyword(answers[key]):
            problems.append(f"{key} {answers[key]!r} must be a Python identifier: type lower-case letters, digits and '_', e.g. 'crashed'")
    if answers["pipeline_name"] in PIPELINE_MODULE_NAMES or answers["pipeline_name"] == f"{answers['package_name']}_score":
        problems.append(
            f"pipeline_name {answers['pipeline_name']!r} is taken by a step or the scoring pipeline in pipeline.py:"
            f" type another name, e.g. '{answers['package_name']}_pipeline'"
        )
    if not IMAGE.match(answers["docker_image"]):
        problems.append(
            f"docker_image {answers['docker_image']!r} is not an image repository: type e.g. 'ghcr.io/acme/car-crashes' (no tag)"
        )
    if not DNS_LABEL.match(answers["k8s_namespace"]):
        problems.append(f"k8s_namespace {answers['k8s_namespace']!r} is not a DNS-1123 label: type e.g. 'kubeflow'")
    if answers["kfp_host"] and not URL.match(answers["kfp_host"]):
        problems.append(
            f"kfp_host {answers['kfp_host']!r} is not an http(s) URL: type e.g. 'https://kubeflow.example.com/pipeline' "
            "(a scheme, a host, an optional port and path; no spaces, quotes, $ or #) or leave it blank"
        )
    if answers["gcp_project"] and not GCP_PROJECT.match(answers["gcp_project"]):
        problems.append(f"gcp_project {answers['gcp_project']!r} is not a GCP project id: type e.g. 'acme-ml-dev' or leave it blank")
    if answers["gcp_region"] and not GCP_REGION.match(answers["gcp_region"]):
        problems.append(f"gcp_region {answers['gcp_region']!r} is not a GCP region: type e.g. 'europe-west1' or leave it blank")
    if answers["gcp_region"] and not answers["gcp_project"]:
        problems.append("gcp_region is set but gcp_project is blank: type a gcp_project too, or leave both blank")
    if answers["model_kind"] not in MODEL_KINDS:
        problems.append(f"model_kind {answers['model_kind']!r} is not a model kind: type one of {', '.join(MODEL_KINDS)}")
    if answers["cluster_platform"] == "gcp" and not answers["gcp_project"]:
        problems.append("cluster_platform is gcp but gcp_project is blank: type the GCP project id, e.g. 'acme-ml-dev'")
    if answers["cluster_platform"] != "gcp" and answers["gcp_project"]:
        problems.append(
            f"gcp_project is set but cluster_platform is {answers['cluster_platform']!r}:"
            " type gcp as cluster_platform, or leave gcp_project blank"
        )
    for key in FREE_TEXT:
        if any(unicodedata.category(char) in NOT_ONE_LINE for char in answers[key]):
            problems.append(f"{key} must be one line: type it without line breaks, tabs or other control characters")
    if answers["author_email"] and not EMAIL.match(answers["author_email"]):
        problems.append(f"author_email {answers['author_email']!r} is not an e-mail address: type e.g. 'you@example.com' or leave it blank")
    return problems


def main() -> int:
    # The quotes must stay ''': tojson never writes an apostrophe, but it may write a double quote.
    # fmt: off
    answers = {
        "project_name": json.loads(r'''{{ cookiecutter.project_name | tojson }}'''),
        "project_slug": json.loads(r'''{{ cookiecutter.project_slug | tojson }}'''),
        "package_name": json.loads(r'''{{ cookiecutter.package_name | tojson }}'''),
        "model_name": json.loads(r'''{{ cookiecutter.model_name | tojson }}'''),
        "pipeline_name": json.loads(r'''{{ cookiecutter.pipeline_name | tojson }}'''),
        "docker_image": json.loads(r'''{{ cookiecutter.docker_image | tojson }}'''),
        "k8s_namespace": json.loads(r'''{{ cookiecutter.k8s_namespace | tojson }}'''),
        "kfp_host": json.loads(r'''{{ cookiecutter.kfp_host | tojson }}'''),
        "cluster_platform": json.loads(r'''{{ cookiecutter.cluster_platform | tojson }}'''),
        "gcp_project": json.loads(r'''{{ cookiecutter.gcp_project | tojson }}'''),
        "gcp_region": json.loads(r'''{{ cookiecutter.gcp_region | tojson }}'''),
        "model_kind": json.loads(r'''{{ cookiecutter.model_kind | tojson }}'''),
        "description": json.loads(r'''{{ cookiecutter.description | tojson }}'''),
        "author_name": json.loads(r'''{{ cookiecutter.author_name | tojson }}'''),
        "author_email": json.loads(r'''{{ cookiecutter.author_email | tojson }}'''),
    }
    # fmt: on
    problems = check_answers(answers)
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
