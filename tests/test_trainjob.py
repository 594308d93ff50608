"""The training step on Kubeflow: a TrainJob on Kubeflow Trainer's ``xgboost-distributed`` runtime.

The TrainJob is checked against the CRD's own OpenAPI schema (vendored from kubeflow/trainer in tests/data),
the RBAC it needs against Kubernetes' schemas (kubernetes-validate). No Kubernetes can run here, so
tests/trainjob_server.py stands in for the API server with Trainer installed: it speaks the trainjobs REST
contract and runs each TrainJob's nodes as local processes with the variables the runtime injects. The last
tests run the compiled pipeline's steps one by one as pods would (the s3 platform on SeaweedFS), the train
step submitting its TrainJob there, and serve the model it published; and cancel a train step mid-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest
import requests

from hmlcore.deploy.k8s_apply import KubeClient
from hmlcore.deploy.trainjob import TrainJobRun, rbac_manifests, trainjob_manifest
from hmlcore.model.distributed import TrainingError
from hmlcore.training import NODE_COMMAND
from scripts.demo import SAMPLE_CRASH as CRASH

from .conftest import BIN, free_port, start_process, stop_group, wait_ready
from .k8s_server import FORBIDDEN_TOKEN
from .test_runner import _order, _resolve
from .test_s3_cluster import _clean_env, _compile, _typed
from .trainjob_server import FakeTrainerServer, schema_errors

#: what compile puts in HML_TRAINJOB for a step on the s3 platform with KFP's artifact secret
SPEC = {
    "image": "registry.example.com/car-crashes:1.0",
    "namespace": "team-a",
    "env": [
        {"name": "HML_PLATFORM", "value": "s3"},
        {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "mlpipeline-minio-artifact", "key": "accesskey"}}},
    ],
    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
}
IMAGE_PATH = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def test_the_trainjob_validates_against_trainers_crd_schema():
    manifest = trainjob_manifest("hml-train-model-1a2b3c4d", SPEC, command=NODE_COMMAND, args=['{"rounds":3}'], workers=3)
    assert schema_errors(manifest) == []
    trainer = manifest["spec"]["trainer"]
    assert trainer["numNodes"] == 3 and trainer["image"] == SPEC["image"] and trainer["command"] == ["python", "-m", "hmlcore.model.worker"]
    assert trainer["env"] == SPEC["env"] and trainer["resourcesPerNode"] == SPEC["resources"]
    assert manifest["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "xgboost-distributed",
    }
    broken = {**manifest, "spec": {**manifest["spec"], "trainer": {**trainer, "numNodes": "three"}}}
    assert any(error.startswith("spec.trainer.numNodes:") for error in schema_errors(broken))  # the schema does catch a bad field


def test_the_rbac_is_a_valid_role_and_binding_for_trainjobs():
    role, binding = rbac_manifests("team-a", service_account="pipeline-runner")
    for manifest in (role, binding):
        assert kubernetes_validate.validate(manifest, "1.30", strict=True)
    assert role["rules"] == [
        {"apiGroups": ["trainer.kubeflow.org"], "resources": ["trainjobs"], "verbs": ["create", "get", "list", "watch", "delete"]}
    ]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "team-a"}]


def _client(server: FakeTrainerServer, tmp_path: Path, **options) -> KubeClient:
    return KubeClient.from_config(kubeconfig=str(server.write_kubeconfig(tmp_path, **options)))


#: a node that checks what the runtime injected, and fails on rank 1 if asked to
NODE = (
    "import os, sys\n"
    "place = [os.environ[n] for n in ('DMLC_TRACKER_URI', 'DMLC_TRACKER_PORT', 'DMLC_TASK_ID', 'DMLC_NUM_WORKER')]\n"
    "print('node', place, os.environ['AWS_ACCESS_KEY_ID'])\n"
    "sys.exit(int(sys.argv[1]) if place[2] == '1' else 0)\n"
)


@pytest.mark.slow
def test_a_trainjob_runs_to_complete_and_is_deleted(tmp_path: Path):
    secrets = {"mlpipeline-minio-artifact": {"accesskey": "the-key"}}
    with FakeTrainerServer(path=IMAGE_PATH, secrets=secrets) as server:
        manifest = trainjob_manifest("hml-ok", SPEC, command=["python", "-c", NODE], args=["0"], workers=2)
        lines: list[str] = []
        TrainJobRun(_client(server, tmp_path), echo=lines.append, poll=0.1).run(manifest, timeout=120)
        assert lines[0] == "trainjob hml-ok: created in namespace team-a (2 nodes of xgboost-distributed)"
        assert "trainjob hml-ok: complete" in lines and lines[-1] == "trainjob hml-ok: deleted (done)"
        assert (
            "DELETE",
            "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs/hml-ok?propagationPolicy=Foreground",
        ) in server.requests
        logs = sorted(server.logs["hml-ok"])
        assert [line.split("'")[1::2] for line in logs] == [["127.0.0.1", logs[0].split("'")[3], str(rank), "2"] for rank in (0, 1)]
        assert all(line.endswith(" the-key") for line in logs)  # the secret reference, resolved as the kubelet would


@pytest.mark.slow
def test_a_failed_trainjob_fails_with_its_reason_and_is_kept_for_its_logs(tmp_path: Path):
    secrets = {"mlpipeline-minio-artifact": {"accesskey": "the-key"}}
    with FakeTrainerServer(path=IMAGE_PATH, secrets=secrets) as server:
        manifest = trainjob_manifest("hml-bad", SPEC, command=["python", "-c", NODE], args=["7"], workers=2)
        with pytest.raises(TrainingError) as failed:
            TrainJobRun(_client(server, tmp_path), echo=lambda line: None, poll=0.1).run(manifest, timeout=120)
        message = str(failed.value)
        assert message.startswith("trainjob hml-bad failed: FailedJobs: jobset failed due to job node-1 failing")
        assert "node 1 exited with code 7" in message and "kubectl -n team-a logs -l jobset.sigs.k8s.io/jobset-name=hml-bad" in message
        assert not any(method == "DELETE" for method, _ in server.requests) and ("team-a", "hml-bad") in server.objects


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"token": FORBIDDEN_TOKEN}, "the step's service account may not create trainjobs (trainer.kubeflow.org) in namespace team-a"),
        ({"runtimes": ()}, "the ClusterTrainingRuntime xgboost-distributed is not in the cluster: install Kubeflow Trainer's runtimes"),
    ],
    ids=["no-permission", "no-runtime"],
)
def test_a_missing_permission_or_runtime_is_named_in_one_line(tmp_path: Path, options: dict, expected: str):
    token = options.pop("token", None)
    with FakeTrainerServer(path=IMAGE_PATH, **options) as server:
        client = _client(server, tmp_path, **({"token": token} if token else {}))
        with pytest.raises(TrainingError, match=r"^" + expected.replace("(", r"\(").replace(")", r"\)")) as failed:
            TrainJobRun(client, echo=lambda line: None).run(trainjob_manifest("hml-x", SPEC, command=NODE_COMMAND, args=["{}"], workers=2))
        assert "\n" not in str(failed.value) and not server.objects


# ------------------------------------------------------------------ the compiled pipeline, step by step as pods
def _pods(baked: Path, tmp_path: Path, s3_server, *, workers: int) -> tuple[dict, dict, dict, dict]:
    """The compiled spec (with ``workers`` as the run's parameter), the executors' Kubernetes configs, the store's env and the secrets."""
    store = {"HML_S3_ENDPOINT": s3_server.endpoint, "HML_S3_BUCKET": s3_server.bucket, "HML_S3_PREFIX": f"private/team/{tmp_path.name}"}
    spec, platform = _compile(baked, tmp_path, {**_clean_env(), **store})
    spec["root"]["inputDefinitions"]["parameters"]["workers"]["defaultValue"] = workers  # the run's parameter, as a user would set it
    _, configs = _typed(spec, platform)
    secrets = {"mlpipeline-minio-artifact": {"accesskey": s3_server.access_key, "secretkey": s3_server.secret_key}}
    return spec, configs, store, secrets


def _pod_env(spec: dict, configs: dict, name: str, secrets: dict, home: Path, kubeconfig: Path) -> dict[str, str]:
    label = spec["components"][spec["root"]["dag"]["tasks"][name]["componentRef"]["name"]]["executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    env = {
        **_clean_env(),
        "HML_HOME": str(home),
        "KUBECONFIG": str(kubeconfig),
        **{e["name"]: e["value"] for e in container.get("env", [])},
    }
    for secret in configs[label].secret_as_env:
        env.update({k.env_var: secrets[secret.secret_name][k.secret_key] for k in secret.key_to_env})
    return env


@pytest.mark.slow
def test_the_compiled_train_step_submits_a_trainjob_whose_model_serves(baked_default: Path, tmp_path: Path, s3_server):
    spec, configs, store, secrets = _pods(baked_default, tmp_path, s3_server, workers=2)
    outputs: dict[str, str] = {}
    run_id = "kfp-run-0002"
    with FakeTrainerServer(path=IMAGE_PATH, secrets=secrets) as server:
        kubeconfig = server.write_kubeconfig(tmp_path)
        for name in _order(spec):
            pod = tmp_path / "pods" / name
            (pod / "work").mkdir(parents=True)
            output_file = tmp_path / "launcher" / name / "output"
            command = _resolve(spec, name, run_id=run_id, outputs=outputs, output_file=str(output_file))
            env = _pod_env(spec, configs, name, secrets, pod / "home", kubeconfig)
            step = subprocess.run(command, cwd=pod / "work", env=env, capture_output=True, text=True, timeout=600)
            assert step.returncode == 0, f"{name}: {step.stderr[-3000:]}"
            if output_file.exists():
                outputs[name] = output_file.read_text(encoding="utf-8")
            if name == "train-model":
                trained = step.stderr
        created = [path for method, path in server.requests if method == "POST"]
        assert created == ["/apis/trainer.kubeflow.org/v1alpha1/namespaces/kubeflow/trainjobs"]
        assert not server.objects  # deleted once complete
    assert "created in namespace kubeflow (2 nodes of xgboost-distributed)" in trained and ": complete" in trained
    logs = next(iter(server.logs.values()))
    assert any("worker 1 of 2: " in line and "rows from 1 shard(s)" in line for line in logs), logs
    assert json.loads(outputs["train-model"])["parameters"]["workers"] == 2

    port = free_port()
    serve_env = {**_clean_env(), **store, "HML_PLATFORM": "s3", "HML_HOME": str(tmp_path / "serving-home")}
    serve_env.update({"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key})
    server_process = start_process(
        [str(BIN / "crashed"), "inference", "run-prod", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=tmp_path,
        env=serve_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server_process, timeout=120)
        got = requests.get(f"{base}/predict", params=CRASH, timeout=30)
        assert got.status_code == 200, got.text
        assert got.json()["model"]["version"] == run_id and 0 < got.json()["predictions"][0]["probability"] < 1
    finally:
        stop_group(server_process)


@pytest.mark.slow
def test_a_cancelled_train_step_deletes_its_trainjob(baked_default: Path, tmp_path: Path, s3_server):
    """Kubeflow cancels a run by stopping the step's pod (SIGTERM): the step deletes the TrainJob, whose nodes stop."""
    spec, configs, _, secrets = _pods(baked_default, tmp_path, s3_server, workers=2)
    spec["root"]["inputDefinitions"]["parameters"]["n_estimators"]["defaultValue"] = 200000  # trains far longer than the test waits
    outputs: dict[str, str] = {}
    with FakeTrainerServer(path=IMAGE_PATH, secrets=secrets) as server:
        kubeconfig = server.write_kubeconfig(tmp_path)
        for name in _order(spec)[: _order(spec).index("train-model") + 1]:
            pod = tmp_path / "pods" / name
            (pod / "work").mkdir(parents=True)
            output_file = tmp_path / "launcher" / name / "output"
            command = _resolve(spec, name, run_id="kfp-run-0003", outputs=outputs, output_file=str(output_file))
            env = _pod_env(spec, configs, name, secrets, pod / "home", kubeconfig)
            if name != "train-model":
                step = subprocess.run(command, cwd=pod / "work", env=env, capture_output=True, text=True, timeout=600)
                assert step.returncode == 0, f"{name}: {step.stderr[-3000:]}"
                outputs[name] = output_file.read_text(encoding="utf-8")
                continue
            process = start_process(command, cwd=pod / "work", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 120
            while sum("rows from" in line for lines in server.logs.values() for line in lines) < 2:  # both nodes hold their shard
                assert time.monotonic() < deadline and process.poll() is None, (server.logs, server.requests)
                time.sleep(0.2)
            nodes = [p for processes in server._nodes.values() for p in processes]
            process.send_signal(signal.SIGTERM)
            try:
                _, stderr = process.communicate(timeout=60)
            finally:
                stop_group(process)
            assert process.returncode != 0
            assert any(method == "DELETE" for method, _ in server.requests) and not server.objects
            assert ": deleted (stopped)" in stderr
            assert all(node.poll() is not None for node in nodes)


def test_the_node_command_runs_this_interpreters_worker():
    """The TrainJob's nodes run `python -m hmlcore.model.worker`: the module exists and answers its usage in one line."""
    done = subprocess.run([sys.executable, "-m", "hmlcore.model.worker"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().startswith("usage: python -m hmlcore.model.worker")
