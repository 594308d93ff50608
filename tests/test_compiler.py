"""Compiling to a KFP v2 spec: kfp's own loader reads it back with the commands, dependencies, parameters
and the Kubernetes config the configurators added."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kfp import components, dsl

from hmlcore import hml
from hmlcore.pipelines.compiler import RUN_ID_PLACEHOLDER, compile_pipeline

from .pipeline_demo import ENTRYPOINT, create_app


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("compile") / "demo.yaml"
    result = compile_pipeline(create_app().pipelines["demo"], str(path))
    return path, result


@pytest.mark.slow
def test_the_spec_reloads_with_kfps_loader(compiled):
    path, _ = compiled
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "demo"
    assert set(loaded.component_spec.inputs) == {"count", "weights", "fail"}
    tasks = loaded.pipeline_spec.root.dag.tasks
    assert set(tasks) == {"make-numbers", "summarise", "shout", "check"}
    assert list(tasks["summarise"].dependent_tasks) == ["make-numbers"]
    assert sorted(tasks["check"].dependent_tasks) == ["shout", "summarise"]  # data dependency and .after()
    assert "kubernetes" in loaded.platform_spec.platforms


def test_each_step_runs_the_package_cli_with_its_options(compiled):
    _, result = compiled
    executors = result.spec["deploymentSpec"]["executors"]
    container = executors["exec-summarise"]["container"]
    assert container["image"] == "registry.example/hml-demo:abc123"
    assert container["command"] == [ENTRYPOINT, "pipelines", "demo", "run", "summarise"]
    assert container["args"] == [
        "--numbers",
        "{{$.inputs.parameters['numbers']}}",
        "--weights",
        "{{$.inputs.parameters['weights']}}",
        "--options",
        "{{$.inputs.parameters['options']}}",
        "--verbose",
        "{{$.inputs.parameters['verbose']}}",
        "--hml-run-id",
        "{{$.inputs.parameters['hml_run_id']}}",
        "--hml-output",
        "{{$.outputs.parameters['output'].output_file}}",
    ]
    assert "--hml-output" not in executors["exec-check"]["container"]["args"]  # returns nothing


def test_parameters_types_defaults_and_sources(compiled):
    _, result = compiled
    spec = result.spec
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: v["parameterType"] for k, v in root.items()} == {"count": "NUMBER_INTEGER", "weights": "LIST", "fail": "BOOLEAN"}
    assert root["weights"]["defaultValue"] == [1, 2]
    inputs = spec["components"]["comp-summarise"]["inputDefinitions"]["parameters"]
    assert inputs["options"] == {"defaultValue": {"round": 2}, "isOptional": True, "parameterType": "STRUCT"}
    assert inputs["weights"]["parameterType"] == "LIST" and "defaultValue" not in inputs["weights"]
    task = spec["root"]["dag"]["tasks"]["summarise"]["inputs"]["parameters"]
    assert task["numbers"] == {"taskOutputParameter": {"outputParameterKey": "output", "producerTask": "make-numbers"}}
    assert task["weights"] == {"componentInputParameter": "weights"}
    assert task["verbose"] == {"runtimeValue": {"constant": True}}
    assert task["hml_run_id"] == {"runtimeValue": {"constant": RUN_ID_PLACEHOLDER}}
    assert RUN_ID_PLACEHOLDER == dsl.PIPELINE_JOB_ID_PLACEHOLDER  # what the local runner fills in is what kfp emits
    outputs = spec["components"]["comp-shout"]["outputDefinitions"]["parameters"]
    assert outputs == {"output": {"parameterType": "STRING"}}


def test_configurators_and_app_env_reach_every_step(compiled):
    _, result = compiled
    executors = result.spec["deploymentSpec"]["executors"]
    kubernetes = result.kubernetes
    assert set(kubernetes) == set(executors) == {"exec-make-numbers", "exec-summarise", "exec-shout", "exec-check"}
    for name, executor in executors.items():
        container = executor["container"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {
            "HML_PLATFORM": "s3",  # the app's cluster platform
            "APP_WIDE": "yes",
            "GOOGLE_APPLICATION_CREDENTIALS": "/secret/gcp-credentials/user-gcp-sa.json",
            "GCP_PROJECT": "p",
            # the names whose values are part of the step's cache key (hmlcore.pipelines.cache)
            "HML_CACHE_ENV": "APP_WIDE,GCP_PROJECT,GOOGLE_APPLICATION_CREDENTIALS",
        }
        resources = container["resources"]
        assert (resources["resourceCpuRequest"], resources["resourceCpuLimit"]) == ("500m", "2")
        assert (resources["resourceMemoryRequest"], resources["resourceMemoryLimit"]) == ("1Gi", "2Gi")
        k8s = kubernetes[name]
        assert [(s["secretName"], s["mountPath"]) for s in k8s["secretAsVolume"]] == [("svc", "/secret/gcp-credentials")]
        assert k8s["secretAsEnv"][0]["keyToEnv"] == [{"envVar": "DB_PASSWORD", "secretKey": "password"}]
        assert k8s["emptyDirMounts"] == [{"mountPath": "/scratch", "sizeLimit": "1Gi", "volumeName": "scratch"}]
        assert k8s["nodeSelector"] == {"labels": {"pool": "training"}}
        assert k8s["tolerations"] == [{"effect": "NoSchedule", "key": "dedicated", "operator": "Equal", "value": "ml"}]
    for task in result.spec["root"]["dag"]["tasks"].values():
        assert task["retryPolicy"]["maxRetryCount"] == 2
        assert task["cachingOptions"] == {}  # caching off unless a configurator turns it on


def test_caching_can_be_turned_on_and_the_image_overridden(tmp_path: Path):
    app = create_app()
    app.pipelines.op_configurators[:] = [lambda op: op.with_caching(True)]
    result = compile_pipeline(app.pipelines["tiny"], image="other:v2")
    tasks = result.spec["root"]["dag"]["tasks"]
    assert [t["cachingOptions"] for t in tasks.values()] == [{"enableCache": True}] * 2
    assert {e["container"]["image"] for e in result.spec["deploymentSpec"]["executors"].values()} == {"other:v2"}
    assert result.platform_spec == {}  # no Kubernetes config asked for


@pytest.mark.parametrize(
    ("configure", "error", "message"),
    [
        (lambda op: op.with_env("1BAD", "x"), hml.ConfigError, "invalid environment variable name '1BAD'"),
        (lambda op: op.with_resources(cpu_request="lots"), hml.ConfigError, "step count_up: .*lots"),
        # the same rules as the inference Deployment's resources (hmlcore._resources)
        (lambda op: op.with_resources(cpu_limit="NaN"), hml.ConfigError, "step count_up: .*'NaN'"),
        (
            lambda op: op.with_resources(memory_request="3Gi", memory_limit="2Gi"),
            hml.ConfigError,
            "step count_up: memory request 3Gi is more than its limit 2Gi",
        ),
        (lambda op: op.with_retries(-1), hml.ConfigError, "non-negative integer, got -1"),
        (lambda op: "oops", hml.PipelineError, "must return the task or None"),
    ],
)
def test_a_bad_configurator_fails_the_compile_and_writes_nothing(tmp_path: Path, configure, error, message):
    app = create_app()
    app.pipelines.op_configurators[:] = [configure]
    target = tmp_path / "tiny.yaml"
    target.write_text("earlier", encoding="utf-8")
    with pytest.raises(error, match=message):
        compile_pipeline(app.pipelines["tiny"], str(target))
    assert target.read_text(encoding="utf-8") == "earlier"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.yaml"]


def test_a_type_mismatch_between_steps_is_a_one_line_compile_error(tmp_path: Path):
    app = hml.HmlApp(name="x")

    @hml.op()
    def text() -> str:
        return "a"

    @hml.op()
    def number(n: int) -> None:
        pass

    @hml.pipeline(app.pipelines)
    def mismatched():
        number(n=text().output)

    with pytest.raises(hml.PipelineError, match="pipeline mismatched does not compile: .*") as caught:
        compile_pipeline(app.pipelines["mismatched"], str(tmp_path / "m.yaml"))
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "m.yaml").exists()


def test_output_into_a_missing_folder_is_refused_before_compiling(tmp_path: Path):
    with pytest.raises(hml.PipelineError, match="folder .*nope does not exist"):
        compile_pipeline(create_app().pipelines["tiny"], str(tmp_path / "nope" / "t.yaml"))


def test_the_file_holds_the_spec_and_the_platform_document(compiled):
    path, result = compiled
    documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    assert documents == [result.spec, result.platform_spec]
