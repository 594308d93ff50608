"""Local runs: ``run-all`` walks the compiled DAG like Kubeflow, keeps every output, stops and resumes;
the parity test executes the compiled spec's own command lines as subprocesses and gets the same outputs."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hmlcore import hml
from hmlcore.errors import PipelineError
from hmlcore.pipelines.launcher import dag_order

from .pipeline_demo import create_app, write_entrypoint

STEPS = ["make-numbers", "summarise", "shout", "check"]


def run_all(home: Path, *args: str, env: dict | None = None):
    """``hmldemo pipelines demo run-all ...`` in process, with HML_HOME=home."""
    runner = CliRunner()
    return runner.invoke(create_app().cli(), ["pipelines", "demo", "run-all", *args], env={"HML_HOME": str(home), **(env or {})})


def state_of(home: Path, run_id: str) -> dict:
    return json.loads((home / "runs" / run_id / "state.json").read_text(encoding="utf-8"))


def output_of(home: Path, run_id: str, task: str) -> str:
    return (home / "runs" / run_id / "outputs" / task / "output").read_text(encoding="utf-8")


@pytest.mark.slow
def test_run_all_runs_the_dag_in_order_and_keeps_every_output(tmp_path: Path):
    result = run_all(tmp_path, "--param", "count=3", "--param", "weights=[2, 1]")
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    done = re.findall(r"^\[(\d)/4\] ([a-z-]+): ok in \d+\.\ds", result.stderr, re.M)
    assert [int(i) for i, _ in done] == [1, 2, 3, 4] and sorted(step for _, step in done) == sorted(STEPS), result.stderr
    order = [step for _, step in done]
    assert order.index("make-numbers") < order.index("summarise") < order.index("check") and order.index("shout") < order.index("check")
    state = state_of(tmp_path, run_id)
    assert state["status"] == "succeeded" and state["params"] == {"count": 3, "weights": [2, 1], "fail": False}
    numbers = json.loads(output_of(tmp_path, run_id, "make-numbers"))
    assert numbers["count"] == 3 and numbers["label"] == 'it\'s "quoted" & spaced'
    summary = json.loads(output_of(tmp_path, run_id, "summarise"))
    assert summary == {"label": numbers["label"], "total": 0 * 2 + 1.5 * 1 + 3.0 * 2, "verbose": True, "values": [0, 1.5, 6]}
    assert output_of(tmp_path, run_id, "shout") == "DONE DONE"
    assert (tmp_path / "lake" / "runs" / "demo" / run_id / "check" / "ok").exists()


@pytest.mark.slow
def test_a_bad_pipeline_parameter_is_named(tmp_path: Path):
    result = run_all(tmp_path, "--param", "count=many")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: pipeline parameter count: 'many' is not a whole number"
    result = run_all(tmp_path, "--param", "colour=red")
    assert "unknown pipeline parameter 'colour'; known: count, fail, weights" in result.output


@pytest.mark.slow
def test_a_failing_step_stops_the_run_keeps_what_finished_and_resume_reruns_only_the_rest(tmp_path: Path):
    failed = run_all(tmp_path, "--param", "count=2", env={"HMLDEMO_FAIL": "check"})
    assert failed.exit_code == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: step check (4/4) failed after") and "check refused summary" in last
    run_id = re.search(r"--resume (\S+)\)", last).group(1)
    state = state_of(tmp_path, run_id)
    assert state["status"] == "failed"
    assert {k: v["status"] for k, v in state["tasks"].items()} == {
        "make-numbers": "succeeded",
        "summarise": "succeeded",
        "shout": "succeeded",
        "check": "failed",
    }
    kept = {task: output_of(tmp_path, run_id, task) for task in STEPS[:3]}

    resumed = run_all(tmp_path, "--resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.strip() == run_id
    for step in STEPS[:3]:
        assert re.search(rf"^\[[1-3]/4\] {step}: succeeded in an earlier attempt, skipped$", resumed.stderr, re.M)
    assert "[4/4] check: ok" in resumed.stderr
    assert {task: output_of(tmp_path, run_id, task) for task in STEPS[:3]} == kept
    assert state_of(tmp_path, run_id)["status"] == "succeeded"


def test_resume_refuses_unknown_runs_and_new_parameters(tmp_path: Path):
    assert run_all(tmp_path, "--resume", "local-nope").output.startswith("Error: no run 'local-nope' to resume")
    result = run_all(tmp_path, "--resume", "x", "--param", "count=1")
    assert "do not pass --param with it" in result.output and result.exit_code == 1


@pytest.mark.slow
def test_a_step_failing_in_the_middle_is_named_and_later_steps_do_not_run(tmp_path: Path):
    result = run_all(
        tmp_path,
        env={"HMLDEMO_FAIL": "check"},
    )
    assert "[4/4] check ..." in result.stderr
    app = hml.HmlApp(name="broken", package_entrypoint="hmldemo")

    @hml.op()
    def first() -> int:
        raise RuntimeError("disk full")

    @hml.op()
    def second(n: int) -> None:
        pass

    @hml.pipeline(app.pipelines)
    def chain():
        second(n=first().output)

    runner = CliRunner()
    result = runner.invoke(app.cli(), ["pipelines", "chain", "run-all"], env={"HML_HOME": str(tmp_path)})
    assert result.exit_code == 1
    assert "Error: step first (1/2) failed after" in result.stderr and "RuntimeError: disk full" in result.stderr
    assert "second" not in result.stderr.split("Error:")[0].split("[1/2] first ...")[1]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"auc": float("nan"), "n": 3}, r"step score: output\['auc'\] is nan, which Kubeflow cannot pass"),
        ({"scores": [0.5, float("inf")]}, r"step score: output\['scores'\]\[1\] is inf, which Kubeflow cannot pass"),
        ({"rows": 2**53 + 1}, r"step score: output\['rows'\] is 9007199254740993, above 2\*\*53, which Kubeflow would round"),
    ],
    ids=["nan", "infinity", "big-int"],
)
def test_an_output_kubeflow_cannot_parse_fails_the_step_as_in_the_cluster(tmp_path: Path, value, message):
    """KFP's launcher refuses NaN/Infinity in a STRUCT output and keeps numbers as doubles: run-all refuses the same."""
    app = hml.HmlApp(name="scores", package_entrypoint="scores")

    @hml.op()
    def score() -> dict:
        return value

    @hml.pipeline(app.pipelines)
    def scoring():
        score()

    result = CliRunner().invoke(app.cli(), ["pipelines", "scoring", "run-all"], env={"HML_HOME": str(tmp_path)})
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert re.search(message, error), error
    assert not list(tmp_path.glob("runs/*/outputs/score/output"))  # nothing half-written for the next step
    ran = CliRunner().invoke(app.cli(), ["pipelines", "scoring", "run", "score"], env={"HML_HOME": str(tmp_path)})
    assert ran.exit_code == 1 and re.search(message, ran.stderr), ran.stderr


def test_run_all_sets_each_steps_own_environment_as_the_launcher_does(tmp_path: Path, monkeypatch):
    app = hml.HmlApp(name="envs", package_entrypoint="envs", cluster_platform="s3")
    app.with_env("EVERYWHERE", "app")

    @hml.op()
    def read_env(tag: str) -> dict:
        return {k: os.environ.get(k, "") for k in ("EVERYWHERE", "ONLY_HERE", "HML_PLATFORM")}

    @hml.pipeline(app.pipelines)
    def envs():
        first = read_env(tag="a")
        read_env(tag="b").after(first)

    @hml.deploy_op(app.pipelines)
    def configure(op):
        return op.with_env("ONLY_HERE", f"set for {op.name}") if op.name == "read_env-2" else op

    monkeypatch.delenv("ONLY_HERE", raising=False)
    monkeypatch.setenv("HML_PLATFORM", "local")
    result = CliRunner().invoke(app.cli(), ["pipelines", "envs", "run-all"], env={"HML_HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip()
    first = json.loads(output_of(tmp_path, run_id, "read-env"))
    second = json.loads(output_of(tmp_path, run_id, "read-env-2"))
    assert first == {"EVERYWHERE": "app", "ONLY_HERE": "", "HML_PLATFORM": "local"}
    # the step's own variable reaches it; HML_PLATFORM (the pods' platform) does not: a local run stays local
    assert second == {"EVERYWHERE": "app", "ONLY_HERE": "set for read_env-2", "HML_PLATFORM": "local"}
    assert "ONLY_HERE" not in os.environ and "EVERYWHERE" not in os.environ


def _broken_app() -> hml.HmlApp:
    """A two-step pipeline whose first step prints a line, then fails with an error that is not hmlcore's."""
    app = hml.HmlApp(name="broken", package_entrypoint="hmldemo")

    @hml.op()
    def first(rows: int = 3) -> int:
        print(f"loading {rows} rows")
        raise RuntimeError("disk full")

    @hml.op()
    def second(n: int) -> None:
        pass

    @hml.pipeline(app.pipelines)
    def chain(rows: int = 3):
        second(n=first(rows=rows).output)

    return app


@pytest.mark.parametrize("debug", [[], ["--debug"], "env"], ids=["plain", "--debug", "HML_DEBUG=1"])
def test_a_failed_step_keeps_its_log_names_the_command_that_reruns_it_and_debug_shows_the_traceback(tmp_path: Path, debug):
    app = _broken_app()
    env = {"HML_HOME": str(tmp_path), "HML_DEBUG": "1" if debug == "env" else "0"}
    options = debug if isinstance(debug, list) else []
    result = CliRunner().invoke(app.cli(), ["pipelines", "chain", "run-all", "--param", "rows=5", *options], env=env)
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: step first (1/2) failed after") and "RuntimeError: disk full" in last
    traceback_shown = "Traceback (most recent call last)" in result.stderr
    assert traceback_shown == bool(debug), result.stderr
    log = Path(re.search(r"\(log: (\S+);", last).group(1))
    assert log.parent.name == "first" and log.parent.parent.name == "outputs"
    text = log.read_text(encoding="utf-8")
    assert "loading 5 rows" in text and "Traceback (most recent call last)" in text and "RuntimeError: disk full" in text
    command = shlex.split(re.search(r"rerun it alone: (.+); finish with:", last).group(1))
    assert command[:5] == ["hmldemo", "pipelines", "chain", "run", "first"] and "--rows" in command
    rerun = CliRunner().invoke(app.cli(), command[1:], env={**env, "HML_DEBUG": "0"})
    assert rerun.exit_code == 1 and "RuntimeError: disk full" in rerun.output and "loading 5 rows" in rerun.output


def test_an_unknown_parameter_says_how_a_step_parameter_becomes_one(tmp_path: Path):
    result = CliRunner().invoke(
        _broken_app().cli(), ["pipelines", "chain", "run-all", "--param", "max_depth=3"], env={"HML_HOME": str(tmp_path)}
    )
    assert result.exit_code == 1
    assert "unknown pipeline parameter 'max_depth'; known: rows (a step's parameter is a pipeline parameter only if" in result.output


# ---------------------------------------------------------------------------------------------- parity
def _resolve(spec: dict, task_name: str, *, run_id: str, outputs: dict[str, str], output_file: str) -> list[str]:
    """The task's command line with its placeholders filled, as the Kubeflow launcher fills them (written
    here independently of hmlcore.runner, from the spec alone)."""
    task = spec["root"]["dag"]["tasks"][task_name]
    component = spec["components"][task["componentRef"]["name"]]
    container = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]
    pipeline_defaults = {k: v["defaultValue"] for k, v in spec["root"]["inputDefinitions"]["parameters"].items()}
    values = {}
    for name, definition in component["inputDefinitions"]["parameters"].items():
        source = task.get("inputs", {}).get("parameters", {}).get(name)
        kind = definition["parameterType"]
        if source is None:
            value = definition.get("defaultValue")
        elif "runtimeValue" in source:
            value = source["runtimeValue"]["constant"]
            value = run_id if value == "{{$.pipeline_job_uuid}}" else value
        elif "componentInputParameter" in source:
            value = pipeline_defaults[source["componentInputParameter"]]
        else:
            text = outputs[source["taskOutputParameter"]["producerTask"]]
            value = text if kind == "STRING" else json.loads(text)
        if kind == "BOOLEAN":
            values[name] = "true" if value else "false"
        elif kind in ("LIST", "STRUCT"):
            values[name] = json.dumps(_protobuf_numbers(value), separators=(",", ":"))
        elif kind == "NUMBER_INTEGER":
            values[name] = str(int(value))
        else:
            values[name] = str(value)

    def fill(part: str) -> str:
        part = re.sub(r"\{\{\$\.inputs\.parameters\['([^']+)'\]\}\}", lambda m: values[m.group(1)], part)
        return re.sub(r"\{\{\$\.outputs\.parameters\['[^']+'\]\.output_file\}\}", output_file, part)

    return [fill(p) for p in container["command"] + container["args"]]


def _protobuf_numbers(value):
    """Protobuf keeps every number as a double and its JSON writes whole ones without a fraction: 2.0 -> 2."""
    if isinstance(value, dict):
        return {k: _protobuf_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_protobuf_numbers(v) for v in value]
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _order(spec: dict) -> list[str]:
    tasks = spec["root"]["dag"]["tasks"]
    done: list[str] = []
    while len(done) < len(tasks):
        done += [n for n, t in tasks.items() if n not in done and set(t.get("dependentTasks", [])) <= set(done)]
    return done


@pytest.mark.slow
def test_parity_the_compiled_command_lines_produce_what_run_all_produces(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    write_entrypoint(bin_dir)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    # 1. compile with the package's own CLI, exactly as a user would
    compiled = subprocess.run(
        ["hmldemo", "pipelines", "demo", "compile", "-o", str(tmp_path / "demo.yaml")], env=env, capture_output=True, text=True, timeout=120
    )
    assert compiled.returncode == 0, compiled.stderr
    spec = next(yaml.safe_load_all((tmp_path / "demo.yaml").read_text(encoding="utf-8")))

    # 2. execute each task's compiled command line as a subprocess, in DAG order, like the cluster would
    container_home, run_id = tmp_path / "container-home", "kfp-run-0001"
    outputs: dict[str, str] = {}
    for name in _order(spec):
        output_file = tmp_path / "kfp-outputs" / name / "output"
        command = _resolve(spec, name, run_id=run_id, outputs=outputs, output_file=str(output_file))
        step = subprocess.run(command, env={**env, "HML_HOME": str(container_home)}, capture_output=True, text=True, timeout=120)
        assert step.returncode == 0, f"{name}: {step.stderr}"
        if output_file.exists():
            outputs[name] = output_file.read_text(encoding="utf-8")

    # 3. run-all (as a subprocess too), in another home
    local_home = tmp_path / "local-home"
    local = subprocess.run(
        ["hmldemo", "pipelines", "demo", "run-all"], env={**env, "HML_HOME": str(local_home)}, capture_output=True, text=True, timeout=300
    )
    assert local.returncode == 0, local.stderr
    local_run = local.stdout.strip()

    # 4. same outputs, once the run id and the home folder are told apart
    def normalise(text: str, run: str, home: Path) -> str:
        return text.replace(run, "<run>").replace(str(home), "<home>")

    assert set(outputs) == {"make-numbers", "summarise", "shout"}
    for name, text in outputs.items():
        assert normalise(text, run_id, container_home) == normalise(output_of(local_home, local_run, name), local_run, local_home), name
    numbers = json.loads(outputs["make-numbers"])["numbers"]
    assert (
        Path(numbers["uri"]).read_bytes()
        == Path(json.loads(output_of(local_home, local_run, "make-numbers"))["numbers"]["uri"]).read_bytes()
    )
    assert (container_home / "lake" / "runs" / "demo" / run_id / "check" / "ok").exists()


def _dag(**tasks: list[str]) -> dict:
    return {"root": {"dag": {"tasks": {name: {"dependentTasks": upstream} for name, upstream in tasks.items()}}}}


def test_the_dag_runs_each_task_after_its_upstream_and_otherwise_in_spec_order():
    order = dag_order(_dag(report=["train", "split"], split=[], train=["split"], audit=[]))
    assert order == ["split", "audit", "train", "report"]


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ({"a": ["b"], "b": ["c"], "c": ["a"]}, r"tasks depend on each other in a cycle: (a|b|c) -> .* -> \1"),
        ({"a": ["ghost"]}, "task a depends on ghost, which the pipeline does not hold"),
    ],
    ids=["cycle", "unknown"],
)
def test_a_dag_that_cannot_be_ordered_is_refused_naming_the_tasks(tasks, message):
    with pytest.raises(PipelineError, match=message):
        dag_order(_dag(**tasks))
