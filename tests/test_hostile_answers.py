"""Hostile answers stay data in every file they reach, or the pre-gen hook refuses them with one line.

The bakes hand the answers to cookiecutter through a replay file: cookiecutter then uses them verbatim, as it
does what a user types at its prompts. (Answers given as ``key=value`` on its command line are rendered as
Jinja by cookiecutter itself before the template sees them; the template cannot change that.)

Every hostile string tries to create a canary file through the channel it targets (Python source, a shell
line, a make expansion, a Jinja expression); no bake, install, ``make test``, ``make lint`` or ``make -n``
of a deploy target may create it.
"""

from __future__ import annotations

import ast
import email.utils
import importlib.metadata
import json
import shlex
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest
import yaml
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

from hooks.pre_gen_project import check_answers

from .conftest import BIN, ROOT, run

FREE_TEXT = ["project_name", "description", "author_name"]
CHECKED = [
    "project_slug",
    "package_name",
    "model_name",
    "pipeline_name",
    "docker_image",
    "k8s_namespace",
    "kfp_host",
    "gcp_project",
    "gcp_region",
    "author_email",
]


def hostile(canary: Path) -> list[str]:
    """One line each, every one an attempt to run ``touch canary`` or to break the file it lands in."""
    touch = f"touch {canary}"
    return [
        f'"""; import os; os.system("{touch}"); """',
        f"' + __import__('os').system('{touch}') + '",
        f"$({touch}) `{touch}` \"$({touch})\" '; {touch}; '",
        f"$(shell {touch}) $$(shell {touch}) ${{shell {touch}}}",
        f"{{{{ cycler.__init__.__globals__.os.system('{touch}') }}}} {{% if 1 %}}x{{% endif %}} {{# c #}} {{{{ }}}}",
        "a make comment that continues \\",
        r"backslashes \ \\ \n \x41 \N{BULLET} \u00e9 C:\new\table",
        "emoji 🚗💥 Zoë 模型 עברית \u202ereversed\u202c # not a comment % %(x)s {} {0}",
        "O'Brien's \"quoted\" '''triple''' \"\"\" ending in a quote\"",
        "<script>alert(1)</script> & ]] } ) --> *emphasis* | table | ` code",
        "x" * 5000,
        " ".join(["long words"] * 400),
    ]


@pytest.fixture(scope="module")
def defaults() -> dict:
    """The answers cookiecutter would use with --no-input: the hostile ones replace some of them."""
    context = generate_context(context_file=str(ROOT / "cookiecutter.json"))
    return dict(prompt_for_config(context, no_input=True))


def bake(answers: dict, where: Path) -> Path:
    """Bake ``answers`` verbatim (a replay file) into ``where``; return the project folder."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "replay").mkdir(exist_ok=True)
    replay = where / "replay" / "answers.json"
    replay.write_text(json.dumps({"cookiecutter": answers}), encoding="utf-8")
    config = where / "config.yaml"
    config.write_text(yaml.safe_dump({"cookiecutters_dir": str(where / "cc"), "replay_dir": str(where / "replay")}))
    return Path(cookiecutter(str(ROOT), replay=str(replay), output_dir=str(where / "out"), config_file=str(config)))


def accepting(defaults: dict, texts: list[str], package: str) -> dict:
    """The defaults with ``texts`` as the free-text answers and names made from ``package``."""
    answers = {**defaults, "project_slug": package.replace("_", "-"), "package_name": package}
    answers |= {"model_name": package, "pipeline_name": f"{package}_pipeline", "docker_image": f"ghcr.io/acme/{package.replace('_', '-')}"}
    answers |= dict(zip(FREE_TEXT, texts, strict=True))
    answers["author_email"] = "first.last+ml@example.co.uk"
    return answers


def check_files_hold_the_answers(root: Path, answers: dict) -> None:
    """Every Python file compiles without a warning, TOML and YAML parse, and each answer arrives as typed."""
    for path in root.rglob("*.py"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile(path.read_text(encoding="utf-8"), str(path), "exec", flags=ast.PyCF_ONLY_AST)
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["description"] == answers["description"]
    assert project["authors"] == [{"name": answers["author_name"], "email": answers["author_email"]}]
    for ci in (root / ".github" / "workflows" / "ci.yml", root / ".gitlab-ci.yml"):
        if ci.exists():
            variables = yaml.safe_load(ci.read_text(encoding="utf-8"))
            assert (variables.get("env") or variables.get("variables"))["IMAGE"] == answers["docker_image"]
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert f"# {answers['project_name']}\n" in readme and answers["description"] in readme
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in (".gz", ".whl"):
            path.read_text(encoding="utf-8").encode("utf-8")  # no lone surrogate anywhere


@pytest.mark.slow
def test_hostile_free_text_renders_as_data(defaults, tmp_path):
    """Each hostile string in each free-text answer: every file parses and holds the answer as typed, ruff is clean."""
    canary = tmp_path / "canary"
    strings = hostile(canary)
    roots = []
    for shift in range(len(strings)):
        texts = [strings[(shift + i) % len(strings)] for i in range(len(FREE_TEXT))]
        answers = accepting(defaults, texts, f"hostile_{shift}")
        answers["ci"] = ["github", "gitlab"][shift % 2]
        root = bake(answers, tmp_path / f"bake{shift}")
        check_files_hold_the_answers(root, answers)
        roots.append(root)
    for command in (["ruff", "check", "--no-cache"], ["ruff", "format", "--no-cache", "--check"]):
        result = run([str(BIN / command[0]), *command[1:], *map(str, roots)], cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    assert not canary.exists()


def test_the_longest_names_the_hook_accepts_lint_clean(defaults, tmp_path):
    """Names at their length limits still give lines within the package's line length."""
    package = "p" * 30
    answers = {**defaults, "project_slug": "s" * 63, "package_name": package, "model_name": "m" * 40, "pipeline_name": "q" * 40}
    answers |= {"docker_image": "registry.example.com:5000/" + "i" * 64, "k8s_namespace": "n" * 63}
    answers |= {"cluster_platform": "gcp", "gcp_project": "g" * 30}
    answers |= {"gcp_region": "europe-west1", "kfp_host": "https://" + "k" * 200 + ".example.com/pipeline"}
    root = bake(answers, tmp_path)
    for command in (["ruff", "check", "--no-cache", "."], ["ruff", "format", "--no-cache", "--check", "."]):
        result = run([str(BIN / command[0]), *command[1:]], cwd=root)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_checked_answer_refuses_every_hostile_string(defaults, tmp_path):
    """The answers that name things (packages, images, namespaces, URLs) take no hostile string, each refusal one line."""
    # each string alone, and after a valid start (but for the one made of letters only: a URL may be long),
    # so that a check of the first characters only is not enough
    prefixes = {"kfp_host": "https://kfp.example.com/", "docker_image": "ghcr.io/acme/", "gcp_project": "acme-", "author_email": "you@"}
    strings = hostile(tmp_path / "canary")
    for key in CHECKED:
        for text in strings + [prefixes.get(key, "a") + text for text in strings if not text.isalnum()]:
            problems = check_answers({**defaults, key: text})
            assert problems, f"{key}={text!r} was accepted"
            assert any(problem.startswith(key) for problem in problems), problems
            assert all("\n" not in problem and "type" in problem for problem in problems), problems


REFUSED = [
    ({"project_name": "two\nlines"}, "project_name must be one line: type it without line breaks"),
    ({"description": "a\rb"}, "description must be one line"),
    ({"author_name": "tab\there"}, "author_name must be one line"),
    ({"description": "line\u2028separator"}, "description must be one line"),
    ({"author_email": "you@example.com\n"}, "author_email must be one line"),
    ({"author_email": "x$(touch canary)@example.com"}, "author_email 'x$(touch canary)@example.com' is not an e-mail address: type"),
    ({"kfp_host": "https://kfp.example.com/$(touch canary)"}, "kfp_host 'https://kfp.example.com/$(touch canary)' is not an http(s) URL"),
    ({"kfp_host": "https://user:secret@kfp.example.com"}, "is not an http(s) URL"),
    ({"kfp_host": "https://kfp.example.com/#x"}, "is not an http(s) URL"),
    ({"docker_image": "ghcr.io/acme/x;touch canary"}, "is not an image repository"),
    ({"package_name": "p" * 31}, "is longer than 30 characters: type a shorter name"),
    ({"pipeline_name": "p" * 41}, "pipeline_name 'pppppppppppppppppppp'... is longer than 40 characters"),
]


@pytest.mark.parametrize("answers,message", REFUSED, ids=[f"{next(iter(a))}-{i}" for i, (a, _) in enumerate(REFUSED)])
def test_refused_bakes_say_what_to_type_and_write_nothing(defaults, tmp_path, capfd, answers, message):
    """The hook stops the bake before any file is written, with one line per problem."""
    with pytest.raises(FailedHookException):
        bake({**defaults, **answers}, tmp_path)
    err = capfd.readouterr().err
    assert message in err
    assert "Traceback" not in err and all(line.startswith("ERROR: ") for line in err.strip().splitlines())
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ---------------------------------------------------------------------------------- installed, tested, linted
@pytest.fixture(scope="module")
def hostile_bakes(defaults, tmp_path_factory):
    """Two bakes that put every hostile string in a free-text answer once: two strings in each answer, side by side."""
    base = tmp_path_factory.mktemp("hostile")
    canary = base / "canary"
    strings = hostile(canary)
    bakes = []
    half = len(strings) // 2
    for first in (0, len(FREE_TEXT)):
        package = f"hostile_bake_{first}"
        texts = [f"{strings[first + i]} {strings[first + i + half]}" for i in range(len(FREE_TEXT))]
        answers = accepting(defaults, texts, package)
        root = bake(answers, base / package)
        bakes.append((root, answers))
    yield canary, bakes
    packages = [answers["package_name"] for _, answers in bakes]
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", *packages], check=False, capture_output=True)


@pytest.mark.slow
def test_hostile_bakes_install_pass_their_tests_and_lint_and_run_nothing(hostile_bakes):
    """pip install, make test, make lint and make -n of every deploy target: all succeed, the canary never appears."""
    canary, bakes = hostile_bakes
    make = ["make", "--no-print-directory", f"PYTHON={sys.executable}"]
    env = {"PATH": f"{BIN}:/usr/bin:/bin"}
    for root, answers in bakes:
        install = run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(root)], cwd=root)
        assert install.returncode == 0, install.stdout + install.stderr
        fields = importlib.metadata.metadata(answers["package_name"])
        assert fields["Summary"] == answers["description"]
        assert email.utils.parseaddr(fields["Author-email"]) == (answers["author_name"], answers["author_email"])
        for target in (
            ["test"],
            ["lint"],
            ["-n", "deploy-dev", "deploy-prod", "deploy-inference", "TAG=abc", "KFP_HOST=https://kfp.example.com"],
        ):
            result = run([*make, *target], cwd=root, env=env)
            assert result.returncode == 0, f"make {' '.join(target)}: {result.stdout}{result.stderr}"
        assert not canary.exists(), f"a hostile answer ran code in {root.name}"
    # a setting reaches the deploy command as one shell word, whatever it holds
    root = bakes[0][0]
    host = f'https://kfp.example.com/it\'s "a"; touch {canary}; `touch {canary}` \\'
    dry_run = run([*make, "-n", "deploy-dev", "TAG=abc"], cwd=root, env={**env, "KFP_HOST": host})
    deploy = shlex.split(dry_run.stdout.splitlines()[-1])
    assert deploy[deploy.index("--host") + 1] == host
    assert not canary.exists()
