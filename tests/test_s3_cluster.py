"""The default package on a cluster: the s3 platform against a real S3 server (SeaweedFS on 127.0.0.1).

Pods share nothing but the object store, so each compiled step's command line runs here in its own
fresh working folder and ``HML_HOME``, with only the environment the compiled spec gives its container
(its ``env`` plus the secret keys kfp-kubernetes maps into it), and the published model is then served by
``run-prod`` from yet another empty ``HML_HOME``. The compiled spec is read back with Kubeflow's own
protobuf types (``kfp-pipeline-spec`` and ``kfp-kubernetes``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from google.protobuf import json_format

from scripts.demo import SAMPLE_CRASH as CRASH

from .conftest import BIN, free_port, run, start_process, stop_group, wait_ready
from .test_runner import _order, _resolve

pytestmark = pytest.mark.slow

PIPELINE = "crashed_pipeline"
#: what a stock Kubeflow Pipelines install provides (manifests/kustomize: seaweedfs Service, pipeline-install-config, secret)
KFP_STORE = {"HML_S3_ENDPOINT": "http://seaweedfs.kubeflow:9000", "HML_S3_BUCKET": "mlpipeline"}
KFP_SECRET = "mlpipeline-minio-artifact"


def _clean_env() -> dict[str, str]:
    """This machine's environment without any platform or cloud setting: a pod starts with none of them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HML_", "AWS_", "GCP_", "GOOGLE_", "K8S_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}  # the image's console script


def _compile(baked: Path, folder: Path, env: dict[str, str]) -> tuple[dict, dict]:
    target = folder / "pipeline.yaml"
    result = run([str(BIN / "crashed"), "pipelines", PIPELINE, "compile", "-o", str(target)], cwd=baked, env=env)
    assert result.returncode == 0, result.stderr
    spec, platform = yaml.safe_load_all(target.read_text(encoding="utf-8"))
    return spec, platform


def _typed(spec: dict, platform: dict) -> tuple[object, dict[str, object]]:
    """The spec and each executor's Kubernetes config parsed by Kubeflow's own protobuf types (unknown fields refused)."""
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    typed = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    configs = {
        name: json_format.ParseDict(config, kubernetes_executor_config_pb2.KubernetesExecutorConfig()) for name, config in executors.items()
    }
    return typed, configs


def test_the_default_bake_compiles_for_kubeflows_own_object_store(baked_default: Path, tmp_path: Path):
    spec, platform = _compile(baked_default, tmp_path, _clean_env())
    typed, configs = _typed(spec, platform)
    executors = typed.deployment_spec.fields["executors"].struct_value.fields  # type: ignore[attr-defined]
    assert set(configs) == set(executors) and len(executors) == 6
    for name, executor in executors.items():
        env = {
            e.struct_value.fields["name"].string_value: e.struct_value.fields["value"].string_value
            for e in executor.struct_value.fields["container"].struct_value.fields["env"].list_value.values
        }
        assert env["HML_PLATFORM"] == "s3", name
        assert {k: env[k] for k in KFP_STORE} == KFP_STORE, name
        assert env["HML_S3_PREFIX"] == "private/kubeflow/car-crashes", name
        (secret,) = configs[name].secret_as_env  # type: ignore[attr-defined]
        secret_name = secret.secret_name or secret.secret_name_parameter.runtime_value.constant.string_value
        assert secret_name == KFP_SECRET, name
        assert {(k.secret_key, k.env_var) for k in secret.key_to_env} == {
            ("accesskey", "AWS_ACCESS_KEY_ID"),
            ("secretkey", "AWS_SECRET_ACCESS_KEY"),
        }, name
    # the inference pod gets the same platform, settings and keys
    manifest = run([str(BIN / "crashed"), "inference", "manifest"], cwd=baked_default, env=_clean_env())
    assert manifest.returncode == 0, manifest.stderr
    container = next(yaml.safe_load_all(manifest.stdout))["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env["HML_PLATFORM"] == "s3" and env["HML_S3_BUCKET"] == "mlpipeline"
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": KFP_SECRET, "key": "secretkey"}}


def test_local_never_reaches_the_cluster_by_accident(baked_default: Path, tmp_path: Path):
    env = {**_clean_env(), "HML_CLUSTER_PLATFORM": "local"}
    compiled = run([str(BIN / "crashed"), "pipelines", PIPELINE, "compile", "-o", str(tmp_path / "p.yaml")], cwd=baked_default, env=env)
    assert compiled.returncode == 1 and not (tmp_path / "p.yaml").exists()
    assert compiled.stderr.strip().startswith("Error: pipeline crashed-pipeline (step ") and "pod-local platform 'local'" in compiled.stderr
    manifest = run([str(BIN / "crashed"), "inference", "manifest"], cwd=baked_default, env=env)
    assert manifest.returncode == 1 and manifest.stdout == ""
    assert manifest.stderr.strip().startswith("Error: inference deployment car-crashes-inference would run on the pod-local platform")


def test_each_step_in_its_own_pod_then_run_prod_from_an_empty_home(baked_default: Path, tmp_path: Path, s3_server):
    store = {"HML_S3_ENDPOINT": s3_server.endpoint, "HML_S3_BUCKET": s3_server.bucket, "HML_S3_PREFIX": f"private/kubeflow/{tmp_path.name}"}
    spec, platform = _compile(baked_default, tmp_path, {**_clean_env(), **store})
    _, configs = _typed(spec, platform)
    secret_data = {"accesskey": s3_server.access_key, "secretkey": s3_server.secret_key}  # the Kubernetes secret's keys
    outputs: dict[str, str] = {}
    run_id = "kfp-run-0001"
    for name in _order(spec):
        pod = tmp_path / "pods" / name
        work, home = pod / "work", pod / "home"
        work.mkdir(parents=True)
        output_file = tmp_path / "launcher" / name / "output"  # the launcher's, read back and passed on by KFP
        command = _resolve(spec, name, run_id=run_id, outputs=outputs, output_file=str(output_file))
        label = spec["components"][spec["root"]["dag"]["tasks"][name]["componentRef"]["name"]]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][label]["container"]
        env = {**_clean_env(), "HML_HOME": str(home), **{e["name"]: e["value"] for e in container.get("env", [])}}
        for secret in configs[label].secret_as_env:  # type: ignore[attr-defined]
            env.update({k.env_var: secret_data[k.secret_key] for k in secret.key_to_env})
        assert env["HML_PLATFORM"] == "s3"
        step = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert step.returncode == 0, f"{name}: {step.stderr[-3000:]}"
        if output_file.exists():
            outputs[name] = output_file.read_text(encoding="utf-8")
        left = [str(p.relative_to(pod)) for p in pod.rglob("*") if p.is_file()]
        assert left == [], f"{name} left data on its pod's disk: {left}"
    assert set(outputs) >= {"extract", "train-model", "evaluate-model"}

    # the published model, served from another empty home with only the store's settings and keys
    port = free_port()
    serve_env = {
        **_clean_env(),
        **store,
        "HML_PLATFORM": "s3",
        "HML_HOME": str(tmp_path / "serving-home"),
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    server = start_process(
        [str(BIN / "crashed"), "inference", "run-prod", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=serve_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server, timeout=120)
        model = requests.get(f"{base}/model", timeout=30).json()
        got = requests.get(f"{base}/predict", params=CRASH, timeout=30)
        assert got.status_code == 200, got.text
        answer = got.json()["predictions"][0]
        assert answer["dead"] in model["classes"] and 0 < answer["probability"] < 1
        assert got.json()["model"]["version"] == run_id
    finally:
        stop_group(server)
    assert not json.loads(outputs["evaluate-model"]) == {}
