"""The pipeline commands as a user types them: run one step, compile, deploy; errors are one line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from .conftest import ROOT, free_port
from .kfp_server import FakeKfp
from .pipeline_demo import create_app


@pytest.fixture(autouse=True)
def kfp_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kfp.client import client

    monkeypatch.setattr(client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp" / "context.json"))


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(create_app().cli(), list(args), env=env)


def test_run_parses_options_exactly_as_the_compiled_command_passes_them(tmp_path: Path):
    numbers = {"label": "x", "count": 2, "numbers": {"uri": "u", "sha256": "s"}}
    out = tmp_path / "out" / "output"
    result = invoke("pipelines", "demo", "run", "shout", "--text", 'it\'s "so" & so', "--times", "3.0", "--hml-output", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == " ".join(['IT\'S "SO" & SO'] * 3)
    bad = invoke("pipelines", "demo", "run", "summarise", "--numbers", json.dumps(numbers), "--weights", "{}", "--verbose", "true")
    assert bad.exit_code == 2 and "Invalid value for --weights: '{}' is not a JSON array" in bad.output
    bad = invoke("pipelines", "demo", "run", "check", "--summary", "{}", "--fail", "maybe")
    assert bad.exit_code == 2 and "'maybe' is not a boolean" in bad.output


def test_run_writes_json_output_and_prints_it_without_a_file(tmp_path: Path):
    result = invoke("pipelines", "demo", "run", "make-numbers", "--count", "2", "--hml-run-id", "r1", env={"HML_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)
    assert output["count"] == 2 and "/runs/demo/r1/make_numbers/numbers.json" in output["numbers"]["uri"]


@pytest.mark.slow
def test_compile_writes_the_spec_and_names_the_file(tmp_path: Path):
    target = tmp_path / "demo.yaml"
    result = invoke("pipelines", "demo", "compile", "-o", str(target), "--image", "reg/x:v9")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(target) and "compiled demo: 4 steps" in result.stderr
    assert "image: reg/x:v9" in target.read_text(encoding="utf-8")


@pytest.mark.slow
def test_deploy_commands_against_the_fake_server(tmp_path: Path):
    with FakeKfp() as fake:
        env = {"KFP_HOST": fake.url, "HML_IMAGE": "reg/hml-demo:c0ffee"}
        dev = invoke("pipelines", "demo", "deploy-dev", "--param", "count=5", env=env)
        assert dev.exit_code == 0, dev.output
        (run,) = fake.runs.values()
        assert dev.stdout.strip() == f"run {run['run_id']}: {fake.url}/#/runs/details/{run['run_id']}"
        for _ in range(2):
            prod = invoke("pipelines", "demo", "deploy-prod", "--host", fake.url, "--cron", "0 3 * * *", env=env)
            assert prod.exit_code == 0, prod.output
        assert "(version c0ffee-" in prod.stdout
        assert sorted(p["display_name"] for p in fake.pipelines.values()) == ["demo", "demo-dev"]
        (job,) = fake.recurring_runs.values()
        assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["deploy-dev"], "Error: no Kubeflow Pipelines host: pass --host or set KFP_HOST"),
        (["deploy-prod", "--host", "http://127.0.0.1:1", "--cron", "0 0 * 13 *"], "Error: invalid cron '0 0 * 13 *': month '13' is not"),
    ],
)
def test_deploy_mistakes_are_one_line_with_a_non_zero_exit(args: list[str], message: str):
    result = invoke("pipelines", "demo", *args, env={"KFP_HOST": ""})
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith(message)


@pytest.mark.slow
def test_an_unreachable_or_refusing_server_is_one_line():
    port = free_port()
    result = invoke("pipelines", "tiny", "deploy-dev", "--host", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1 and result.output.startswith(f"Error: cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}")
    assert len(result.output.strip().splitlines()) == 1
    with FakeKfp(token="t") as fake:
        result = invoke("pipelines", "demo", "deploy-prod", "--host", fake.url, "--existing-token", "wrong")
        assert result.exit_code == 1 and "HTTP 401" in result.output and len(result.output.strip().splitlines()) == 1
        assert not fake.pipelines


@pytest.mark.slow
def test_help_and_the_step_commands_do_not_import_kfp():
    probe = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); from tests.pipeline_demo import create_app; app = create_app(); "
        "from click.testing import CliRunner; r = CliRunner().invoke(app.cli(), ['pipelines', 'demo', 'run', '--help']); "
        "assert r.exit_code == 0, r.output; assert 'make_numbers' in r.output; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('kfp', 'kfp_server_api')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_the_namespace_comes_from_the_option_the_environment_or_the_app(tmp_path: Path):
    with FakeKfp(multi_user=True) as fake:
        env = {"KFP_HOST": fake.url}
        assert invoke("pipelines", "demo", "deploy-dev", "--namespace", "from-option", env=env).exit_code == 0
        assert invoke("pipelines", "demo", "deploy-dev", env={**env, "KFP_NAMESPACE": "from-env"}).exit_code == 0
        assert invoke("pipelines", "tiny", "deploy-dev", env=env).exit_code == 0
        assert sorted(e["namespace"] for e in fake.experiments.values()) == ["from-env", "from-option", "kubeflow"]


@pytest.mark.slow
def test_an_old_backend_is_one_line_on_the_command_line(tmp_path: Path):
    with FakeKfp(tag_name="2.4.1") as fake:
        result = invoke("pipelines", "demo", "deploy-prod", "--host", fake.url)
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: Kubeflow Pipelines at {fake.url} is 2.4.1; hmlcore needs backend 2.5.0 or newer: upgrade it")


def test_compile_refuses_the_pod_local_platform_and_writes_nothing(tmp_path: Path):
    from hmlcore import hml

    app = hml.HmlApp(name="laptop-only", package_entrypoint="laptop")

    @hml.op()
    def hello() -> str:
        return "hi"

    @hml.pipeline(app.pipelines)
    def greet():
        hello()

    target = tmp_path / "greet.yaml"
    result = CliRunner().invoke(app.cli(), ["pipelines", "greet", "compile", "-o", str(target)])
    assert result.exit_code == 1 and not target.exists()
    (line,) = result.output.strip().splitlines()
    assert (
        line.startswith("Error: pipeline greet (step hello) would run on the pod-local platform 'local'")
        and "cluster_platform='s3'" in line
    )
    allowed = CliRunner().invoke(app.cli(), ["pipelines", "greet", "compile", "-o", str(target)], env={"HML_ALLOW_POD_LOCAL": "1"})
    assert allowed.exit_code == 0, allowed.output
    assert target.exists()


def test_help_names_the_environment_variable_each_option_reads():
    result = invoke("pipelines", "demo", "deploy-prod", "--help")
    assert result.exit_code == 0, result.output
    entries = {entry.split()[0]: entry for entry in re.split(r" (?=--[a-z])", " ".join(result.output.split()))}
    for option, variable in [
        ("--host", "KFP_HOST"),
        ("--namespace", "KFP_NAMESPACE"),
        ("--image", "HML_IMAGE"),
        ("--version", "HML_VERSION"),
    ]:
        assert f"env var: {variable}" in entries[option], result.output
    assert "[env: " not in result.output  # once, in click's own words


def test_the_pipelines_listing_says_what_each_pipeline_does():
    result = invoke("pipelines", "--help")
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s+demo\s+Numbers in, a summary out\.$", result.output, re.M), result.output
    assert re.search(r"^\s+tiny\s+Two steps counting up\.$", result.output, re.M), result.output
