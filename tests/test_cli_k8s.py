"""``inference manifest`` and ``inference deploy`` from the command line.

Deploys go to ``tests/k8s_server.py``, a small API server of our own on 127.0.0.1 that speaks the
documented REST paths and server-side apply (no real kube-apiserver can run here; kmock is not used).
A kubeconfig written to ``tmp_path`` points the command at it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner, Result

from hmlcore import hml
from tests.conftest import free_port
from tests.k8s_server import FORBIDDEN_TOKEN, FakeKubeApiServer, write_kubeconfig

DEPLOYMENT = "/apis/apps/v1/namespaces/ml/deployments/demo-inference"
SERVICE = "/api/v1/namespaces/ml/services/demo-inference"


def make_app(configure: Callable[[Any], Any] | None = None) -> hml.HmlApp:
    app = hml.HmlApp(name="demo", package_entrypoint="demo", image_url="demo:1", k8s_namespace="ml", cluster_platform="s3")

    @hml.deploy_inference(app.inference)
    def deploy_inference(deployment):
        deployment.with_empty_dir("tmp", "/tmp")
        return configure(deployment) if configure else deployment

    return app


def invoke(app: hml.HmlApp, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app.cli(), ["inference", *args], env=env, catch_exceptions=False)


@pytest.fixture
def server() -> Iterator[FakeKubeApiServer]:
    with FakeKubeApiServer() as running:
        yield running


@pytest.fixture
def kubeconfig(server: FakeKubeApiServer, tmp_path: Path) -> str:
    return str(server.write_kubeconfig(tmp_path))


def deploy(app: hml.HmlApp, kubeconfig: str, *args: str) -> Result:
    return invoke(app, "deploy", "--kubeconfig", kubeconfig, *args)


# ----------------------------------------------------------------- manifest
def test_manifest_prints_kubectl_applyable_yaml_that_validates() -> None:
    app = make_app(lambda d: d.with_autoscaling(2, 5).with_ingress("demo.example.com"))
    result = invoke(app, "manifest", "--image", "registry.example.com/demo:abc", "-n", "staging")
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    assert [d["kind"] for d in documents] == ["Deployment", "Service", "HorizontalPodAutoscaler", "Ingress"]
    for document in documents:
        assert kubernetes_validate.validate(document, "1.30", strict=True)
        assert document["metadata"]["namespace"] == "staging"
    assert documents[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/demo:abc"


def test_manifest_takes_image_and_namespace_from_the_environment_and_writes_a_file(tmp_path: Path) -> None:
    out = tmp_path / "inference.yaml"
    result = invoke(make_app(), "manifest", "-o", str(out), env={"HML_IMAGE": "demo:from-env", "K8S_NAMESPACE": "prod"})
    assert result.exit_code == 0, result.output
    deployment = next(yaml.safe_load_all(out.read_text()))
    assert deployment["metadata"]["namespace"] == "prod"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "demo:from-env"


def test_manifest_kserve_is_one_inference_service() -> None:
    result = invoke(make_app(lambda d: d.with_replicas(2)), "manifest", "--kserve")
    assert result.exit_code == 0, result.output
    (isvc,) = yaml.safe_load_all(result.output)
    assert (isvc["kind"], isvc["metadata"]["name"]) == ("InferenceService", "demo-inference")
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (2, 2)
    assert predictor["containers"][0]["args"] == ["inference", "run-prod", "--port", "8000"]


# ----------------------------------------------------------------- deploy
def test_deploy_creates_then_reports_unchanged_then_patches_in_place(server: FakeKubeApiServer, kubeconfig: str) -> None:
    first = deploy(make_app(), kubeconfig)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == ["deployment.apps/demo-inference created", "service/demo-inference created"]
    uid = server.objects[DEPLOYMENT]["metadata"]["uid"]
    assert server.objects[DEPLOYMENT]["spec"]["template"]["spec"]["containers"][0]["image"] == "demo:1"

    again = deploy(make_app(), kubeconfig)
    assert again.output.splitlines() == ["deployment.apps/demo-inference unchanged", "service/demo-inference unchanged"]

    changed = deploy(make_app(lambda d: d.with_replicas(3)), kubeconfig, "--image", "demo:2")
    assert changed.exit_code == 0, changed.output
    lines = changed.output.splitlines()
    assert lines[0].startswith("deployment.apps/demo-inference configured: ")
    assert "spec.replicas" in lines[0] and "spec.template.spec.containers[inference].image" in lines[0]
    assert lines[1] == "service/demo-inference unchanged"
    stored = server.objects[DEPLOYMENT]
    assert stored["metadata"]["uid"] == uid  # patched, not deleted and recreated
    assert stored["spec"]["replicas"] == 3 and stored["spec"]["template"]["spec"]["containers"][0]["image"] == "demo:2"
    # every write was a server-side apply by hmlcore; nothing was deleted, replaced or posted
    writes = [r for r in server.requests if r["method"] != "GET"]
    assert {r["method"] for r in writes} == {"PATCH"}
    assert all(r["content_type"] == "application/apply-patch+yaml" and r["query"]["fieldManager"] == "hmlcore" for r in writes)


def test_deploy_applies_autoscaler_and_ingress_too(server: FakeKubeApiServer, kubeconfig: str) -> None:
    result = deploy(make_app(lambda d: d.with_autoscaling(2, 4).with_ingress("demo.example.com")), kubeconfig)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[2:] == [
        "horizontalpodautoscaler.autoscaling/demo-inference created",
        "ingress.networking.k8s.io/demo-inference created",
    ]
    assert server.objects["/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/demo-inference"]["spec"]["maxReplicas"] == 4


def test_dry_run_asks_the_server_to_validate_and_stores_nothing(server: FakeKubeApiServer, kubeconfig: str) -> None:
    result = deploy(make_app(), kubeconfig, "--dry-run", "--wait")
    assert result.exit_code == 0, result.output
    assert "deployment.apps/demo-inference created (server dry run)" in result.output
    assert server.objects == {}
    assert all(r["query"].get("dryRun") == "All" for r in server.requests if r["method"] == "PATCH")


def test_wait_follows_the_rollout_until_it_is_done(server: FakeKubeApiServer, kubeconfig: str) -> None:
    result = deploy(make_app(lambda d: d.with_replicas(2)), kubeconfig, "--wait")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "Waiting for deployment demo-inference spec update to be observed..." in lines
    assert any("1 out of 2 new replicas have been updated" in line for line in lines)
    assert any("of 2 updated replicas are available" in line for line in lines)
    assert lines[-1] == "deployment demo-inference successfully rolled out"


def test_wait_for_a_kserve_inference_service_until_ready(server: FakeKubeApiServer, kubeconfig: str) -> None:
    result = deploy(make_app(), kubeconfig, "--kserve", "--wait")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "inferenceservice.serving.kserve.io/demo-inference created"
    assert "PredictorNotReady" in result.output and result.output.splitlines()[-1] == "inferenceservice/demo-inference is ready"


def test_where_each_kind_lives_comes_from_the_clusters_api_discovery(server: FakeKubeApiServer, kubeconfig: str) -> None:
    result = deploy(make_app(lambda d: d.with_autoscaling(2, 4)), kubeconfig)
    assert result.exit_code == 0, result.output
    asked = [r["path"] for r in server.requests if r["method"] == "GET" and "/namespaces/" not in r["path"]]
    assert {"/apis", "/apis/apps/v1", "/api/v1", "/apis/autoscaling/v2"} <= set(asked)
    assert len(asked) == len(set(asked))  # once per deploy


def test_a_kind_the_cluster_does_not_serve_is_one_line_and_nothing_is_applied(tmp_path: Path) -> None:
    with FakeKubeApiServer(kserve=False) as server:
        result = deploy(make_app(), str(server.write_kubeconfig(tmp_path)), "--kserve")
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "cannot deploy a InferenceService of apiVersion serving.kserve.io/v1beta1: the cluster at http://127.0.0.1:" in result.output
    assert [r for r in server.requests if r["method"] != "GET"] == [] and server.objects == {}


def test_a_token_the_cluster_refuses_is_one_line(server: FakeKubeApiServer, tmp_path: Path) -> None:
    result = deploy(make_app(), str(server.write_kubeconfig(tmp_path, token="expired")))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "refused API discovery: 401 Unauthorized" in result.output


@pytest.mark.parametrize(("rollout", "message"), [("stuck", "is not ready after 1s"), ("fail", "rollout failed: ReplicaSet timed out")])
def test_a_rollout_that_does_not_finish_fails_with_one_line(tmp_path: Path, rollout: str, message: str) -> None:
    with FakeKubeApiServer(rollout=rollout) as server:
        result = deploy(make_app(), str(server.write_kubeconfig(tmp_path)), "--wait", "--timeout", "1")
    assert result.exit_code == 1
    assert message in result.output and result.output.strip().splitlines()[-1].startswith("Error: ")


def test_context_picks_the_cluster_from_a_kubeconfig_with_several(server: FakeKubeApiServer, tmp_path: Path) -> None:
    config = yaml.safe_load(server.write_kubeconfig(tmp_path).read_text())
    config["clusters"].append({"name": "elsewhere", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}})
    config["contexts"].append({"name": "elsewhere", "context": {"cluster": "elsewhere", "user": "tester"}})
    config["current-context"] = "elsewhere"
    path = tmp_path / "two-clusters"
    path.write_text(yaml.safe_dump(config))
    assert deploy(make_app(), str(path)).exit_code == 1
    result = deploy(make_app(), str(path), "--context", "test")
    assert result.exit_code == 0, result.output
    assert DEPLOYMENT in server.objects and SERVICE in server.objects


# ----------------------------------------------------------------- bad input
def test_no_kubeconfig_and_not_in_a_pod_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    result = invoke(make_app(), "deploy", env={"KUBECONFIG": str(tmp_path / "missing")})
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Error: no Kubernetes configuration" in result.output


def test_a_broken_kubeconfig_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    result = invoke(make_app(), "deploy", "--kubeconfig", str(broken))
    assert result.exit_code == 1 and result.output.startswith(f"Error: cannot use kubeconfig {broken}")
    assert result.output.count("\n") == 1


def test_an_unreachable_cluster_is_one_line(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path, f"http://127.0.0.1:{free_port()}")
    result = deploy(make_app(), str(kubeconfig))
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach the Kubernetes API at http://127.0.0.1:") and result.output.count("\n") == 1


def test_a_password_in_the_cluster_url_is_masked(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path, f"http://deployer:hunter2@127.0.0.1:{free_port()}")
    result = deploy(make_app(), str(kubeconfig))
    assert result.exit_code == 1 and "hunter2" not in result.output
    assert result.output.startswith("Error: cannot reach the Kubernetes API at http://deployer:***@127.0.0.1:")


def test_forbidden_is_one_line_naming_status_and_reason(server: FakeKubeApiServer, tmp_path: Path) -> None:
    result = deploy(make_app(), str(server.write_kubeconfig(tmp_path, token=FORBIDDEN_TOKEN)))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "403 Forbidden" in result.output and 'User "tester" cannot get resource "deployments"' in result.output
    assert server.objects == {}


@pytest.mark.parametrize(
    ("configure", "message"),
    [
        (lambda d: d.with_resources(memory_limit="lots"), "invalid resource quantity 'lots'"),
        (lambda d: d.with_secret("Not A Name", "/secrets"), "secret name 'Not A Name' is not a Kubernetes name"),
    ],
    ids=["quantity", "name"],
)
def test_bad_configuration_is_refused_before_anything_is_sent(
    server: FakeKubeApiServer, kubeconfig: str, configure: Callable[[Any], Any], message: str
) -> None:
    result = deploy(make_app(configure), kubeconfig)
    assert result.exit_code == 1 and result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1
    assert server.requests == []


@pytest.mark.slow
def test_help_does_not_import_the_kubernetes_client(tmp_path: Path) -> None:
    script = tmp_path / "help.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            from hmlcore import hml
            app = hml.HmlApp(name="demo", package_entrypoint="demo")
            for args in (["--help"], ["inference", "--help"], ["inference", "deploy", "--help"]):
                try:
                    app.start(args)
                except SystemExit:
                    pass
            print("kubernetes loaded" if any(m.split(".")[0] == "kubernetes" for m in sys.modules) else "kubernetes not loaded")
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "manifest" in done.stdout and "--dry-run" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "kubernetes not loaded"
