"""The Kubernetes objects of the inference API: what they hold, that they validate, what they refuse."""

from __future__ import annotations

import copy
import os
from typing import Any

import kubernetes_validate
import pytest
import yaml

from hmlcore import hml
from hmlcore._resources import parse_quantity
from hmlcore.deploy._k8s_names import k8s_name
from hmlcore.deploy.k8s import HmlInferenceDeployment, inference_deployment
from hmlcore.errors import ConfigError

K8S_VERSION = "1.30"


def make_app(name: str = "car-crashes", **kwargs: Any) -> hml.HmlApp:
    return hml.HmlApp(name=name, package_entrypoint="crashed", image_url="registry.example.com/crashed:abc123", **kwargs)


def by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in manifests}


def container_of(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def validate_strict(manifest: dict[str, Any]) -> None:
    """Validate against the Kubernetes 1.30 schemas; unknown fields are errors."""
    assert kubernetes_validate.validate(manifest, K8S_VERSION, strict=True) == K8S_VERSION


def test_default_deployment_runs_the_api_safely_and_validates() -> None:
    manifests = HmlInferenceDeployment(make_app()).manifests()
    assert [m["kind"] for m in manifests] == ["Deployment", "Service"]
    for manifest in manifests:
        validate_strict(manifest)
        assert manifest["metadata"] == {
            "labels": {
                "app.kubernetes.io/name": "car-crashes",
                "app.kubernetes.io/component": "inference",
                "app.kubernetes.io/managed-by": "hmlcore",
            },
            "name": "car-crashes-inference",
            "namespace": "kubeflow",
        }
    deployment, service = manifests
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(manifests)
    assert deployment["spec"]["replicas"] == 1
    assert container["image"] == "registry.example.com/crashed:abc123"
    assert container["args"] == ["inference", "run-prod", "--port", "8000"]
    assert container["ports"] == [{"containerPort": 8000, "name": "http", "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]) == {"requests", "limits"}
    # HML_HOME lives on the writable emptyDir, since the root filesystem is read-only
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HML_HOME"].startswith("/tmp/")
    assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    assert {"emptyDir": {}, "name": "tmp"} in pod["volumes"]
    # the Service selects the pods and reaches the named container port
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_pod_stops_without_cutting_a_request() -> None:
    """preStop pause, then run-prod's drain and graceful timeout: the grace period covers them all."""
    for deployment, drain in (
        (HmlInferenceDeployment(make_app()), 5),
        (HmlInferenceDeployment(make_app()).with_env("HML_DRAIN_SECONDS", "12.5"), 13),
    ):
        manifests = deployment.manifests()
        validate_strict(by_kind(manifests)["Deployment"])
        container = container_of(manifests)
        pause = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
        assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep" and pause >= 3
        grace = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > pause + drain + 30  # 30: run-prod's default --timeout, what a stopping worker may take
    kserve = HmlInferenceDeployment(make_app()).kserve_manifest()
    assert "lifecycle" not in kserve["spec"]["predictor"]["containers"][0]  # Knative refuses hooks; it drains itself


def test_probe_paths_are_routes_the_served_app_answers() -> None:
    app = make_app()
    client = app.inference.create_app().test_client()
    container = container_of(HmlInferenceDeployment(app).manifests())
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert client.get(container[probe]["httpGet"]["path"]).status_code == 200, probe


def test_the_seed_configurator_keeps_one_tmp_volume_and_app_env_reaches_the_pod() -> None:
    app = make_app().with_env("HML_PLATFORM", "GCP")

    @hml.deploy_inference(app.inference)
    def deploy_inference(deployment):
        return deployment.with_empty_dir("tmp", "/tmp")

    manifests = inference_deployment(app).manifests()
    pod = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]
    assert {"name": "HML_PLATFORM", "value": "GCP"} in container_of(manifests)["env"]


COMBINATIONS: dict[str, Any] = {
    "replicas": lambda d: d.with_replicas(3),
    "gcp-auth": lambda d: d.with_gcp_auth("user-gcp-sa"),
    "envs-and-secret-env": lambda d: d.with_envs({"A": 1, "B": "two"}).with_secret_env("db-credentials", {"password": "DB_PASSWORD"}),
    "secret-volume": lambda d: d.with_secret("tls.certs", "/etc/certs"),
    "resources": lambda d: d.with_resources(cpu_request="500m", cpu_limit="2", memory_request="1Gi", memory_limit="2Gi"),
    "empty-dir-size": lambda d: d.with_empty_dir("cache", "/cache", size_limit="2Gi"),
    "autoscaling": lambda d: d.with_autoscaling(2, 10, 70),
    "ingress": lambda d: d.with_ingress("crashes.example.com", "/api"),
    "ingress-tls-class": lambda d: d.with_ingress("crashes.example.com", ingress_class="nginx", tls_secret="crashes-tls"),
    "nodeport": lambda d: d.with_service("NodePort", node_port=30080),
    "service-account-node-selector": lambda d: d.with_service_account("inference").with_node_selector(
        "cloud.google.com/gke-nodepool", "cpu"
    ),
    "everything": lambda d: (
        d.with_gcp_auth("user-gcp-sa")
        .with_env("LOG_LEVEL", "debug")
        .with_secret_env("db", {"pw": "DB_PW"})
        .with_resources(memory_limit="4Gi")
        .with_autoscaling(1, 4)
        .with_ingress("a.example.com")
        .with_service("LoadBalancer", port=8080)
        .with_service_account("sa")
        .with_node_selector("pool", "cpu")
    ),
}


@pytest.mark.parametrize("configure", COMBINATIONS.values(), ids=COMBINATIONS.keys())
def test_every_configurator_combination_validates_against_kubernetes_1_30(configure: Any) -> None:
    deployment = HmlInferenceDeployment(make_app())
    assert configure(deployment) is deployment  # chain style: each with_* returns the deployment
    manifests = deployment.manifests()
    for manifest in manifests:
        validate_strict(manifest)
    pod = by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]
    for names in ([v["name"] for v in pod["volumes"]], [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]]):
        assert len(names) == len(set(names)), names
    validate_kserve_predictor(deployment.kserve_manifest())


def test_configurators_show_up_where_kubernetes_reads_them() -> None:
    deployment = COMBINATIONS["everything"](HmlInferenceDeployment(make_app()))
    objects = by_kind(deployment.manifests())
    container = container_of(list(objects.values()))
    env = {e["name"]: e for e in container["env"]}
    assert env["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/secret/gcp-credentials/user-gcp-sa.json"
    assert {"mountPath": "/secret/gcp-credentials", "name": "secret-user-gcp-sa", "readOnly": True} in container["volumeMounts"]
    assert env["DB_PW"]["valueFrom"] == {"secretKeyRef": {"key": "pw", "name": "db"}}
    assert container["resources"]["limits"]["memory"] == "4Gi"
    # with an autoscaler the Deployment leaves the replica count alone, so applying it again does not undo scaling
    assert "replicas" not in objects["Deployment"]["spec"]
    hpa = objects["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "car-crashes-inference"}
    assert hpa["metrics"][0]["resource"]["target"] == {"averageUtilization": 80, "type": "Utilization"}
    rule = objects["Ingress"]["spec"]["rules"][0]
    assert rule["host"] == "a.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "car-crashes-inference", "port": {"name": "http"}}
    assert objects["Service"]["spec"]["type"] == "LoadBalancer" and objects["Service"]["spec"]["ports"][0]["port"] == 8080
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "sa" and pod["nodeSelector"] == {"pool": "cpu"}


#: Knative Serving's pod fields with its default feature flags (pkg/apis/serving/fieldmask.go, PodSpecMask):
#: what KServe's Serverless mode admits; automountServiceAccountToken only as false
KNATIVE_DEFAULT_POD_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"}
RAW = {"serving.kserve.io/deploymentMode": "RawDeployment"}


def validate_kserve_predictor(isvc: dict[str, Any]) -> None:
    """Validate the predictor's pod part strictly as a v1 Pod, the whole object against KServe's CRD when it is at hand
    (``HML_KSERVE_CRD``: the file config/crd/full/serving.kserve.io_inferenceservices.yaml of kserve/kserve), and a
    Serverless-mode predictor against Knative's default field rules."""
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    pod_spec = copy.deepcopy(isvc["spec"]["predictor"])
    for kserve_field in ("minReplicas", "maxReplicas", "scaleMetric", "scaleMetricType", "scaleTarget"):
        pod_spec.pop(kserve_field, None)
    validate_strict({"apiVersion": "v1", "kind": "Pod", "metadata": isvc["metadata"], "spec": pod_spec})
    crd = os.environ.get("HML_KSERVE_CRD")
    if crd:
        import jsonschema

        with open(crd, encoding="utf-8") as handle:
            definition = yaml.safe_load(handle)
        (version,) = [v for v in definition["spec"]["versions"] if v["name"] == "v1beta1"]
        jsonschema.validate({k: v for k, v in isvc.items() if k != "metadata"}, version["schema"]["openAPIV3Schema"])
    if isvc["metadata"].get("annotations") != RAW:  # Serverless: a Knative Service
        refused = {f for f, v in pod_spec.items() if f not in KNATIVE_DEFAULT_POD_FIELDS and v not in (None, [], {})}
        assert refused <= {"automountServiceAccountToken"} and pod_spec.get("automountServiceAccountToken") in (None, False), refused
        assert "scaleMetric" not in isvc["spec"]["predictor"]  # Knative's autoscaler scales on concurrency or rps, not cpu
        assert all("lifecycle" not in c for c in pod_spec["containers"])


def test_kserve_manifest_is_the_same_app_as_a_custom_predictor() -> None:
    deployment = HmlInferenceDeployment(make_app()).with_autoscaling(2, 6, 60).with_env("LOG_LEVEL", "debug")
    isvc = deployment.kserve_manifest()
    validate_kserve_predictor(isvc)
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleMetric"], predictor["scaleTarget"]) == (2, 6, "cpu", 60)
    (container,) = predictor["containers"]
    plain = container_of(deployment.manifests())
    for key in ("image", "args", "env", "resources", "securityContext", "volumeMounts"):
        assert container[key] == plain[key], key
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": 8000}
    assert "startupProbe" not in container and "name" not in container["ports"][0]  # Knative allows neither
    assert isvc["metadata"]["annotations"] == RAW and predictor["scaleMetricType"] == "Utilization"  # CPU scaling: KServe's HPA


@pytest.mark.parametrize(
    ("configure", "raw"),
    [
        (lambda d: d, False),
        (lambda d: d.with_env("A", "b").with_secret_env("db", {"pw": "DB_PW"}).with_empty_dir("cache", "/cache"), False),
        (lambda d: d.with_service_account("reader"), True),  # automountServiceAccountToken: true
        (lambda d: d.with_node_selector("pool", "cpu"), True),
        (lambda d: d.with_autoscaling(1, 3, 70), True),
    ],
    ids=["plain", "env-secrets-volumes", "service-account", "node-selector", "cpu-autoscaling"],
)
def test_kserve_asks_for_raw_deployment_only_when_knative_would_refuse_the_predictor(configure: Any, raw: bool) -> None:
    isvc = configure(HmlInferenceDeployment(make_app())).kserve_manifest()
    validate_kserve_predictor(isvc)
    assert (isvc["metadata"].get("annotations") == RAW) is raw


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("car-crashes", "inference"), "car-crashes-inference"),
        (("Car_Crashes", "Inference"), "car-crashes-inference"),
        (("3d-model",), "hml-3d-model"),
        (("secret", "tls.certs"), "secret-tls-certs"),
    ],
)
def test_k8s_name_sanitises_to_a_dns_label(parts: tuple[str, ...], expected: str) -> None:
    assert k8s_name(*parts) == expected


def test_long_names_stay_valid_distinct_and_stable_across_deploys() -> None:
    first = HmlInferenceDeployment(make_app("a" * 60)).manifests()
    again = HmlInferenceDeployment(make_app("a" * 60)).manifests()
    other = HmlInferenceDeployment(make_app("a" * 59 + "b")).manifests()
    name = first[0]["metadata"]["name"]
    assert len(name) <= 63 and name == again[0]["metadata"]["name"] and name != other[0]["metadata"]["name"]
    for manifest in first:
        validate_strict(manifest)


def test_an_app_name_starting_with_a_digit_still_names_a_service() -> None:
    manifests = HmlInferenceDeployment(make_app("3d-printer")).manifests()
    assert by_kind(manifests)["Service"]["metadata"]["name"] == "hml-3d-printer-inference"
    for manifest in manifests:
        validate_strict(manifest)


@pytest.mark.parametrize(
    ("text", "amount"), [("250m", "0.25"), ("2", "2"), ("1Gi", str(2**30)), ("1.5G", "1500000000"), ("1e3", "1000"), (3, "3")]
)
def test_parse_quantity(text: Any, amount: str) -> None:
    assert parse_quantity(text) == parse_quantity(amount) and str(parse_quantity(amount)) == amount


BAD = {
    "cpu-word": (lambda d: d.with_resources(cpu_request="lots"), "invalid resource quantity 'lots'"),
    "memory-unit": (lambda d: d.with_resources(memory_limit="1GB"), "'1GB'"),
    "negative": (lambda d: d.with_resources(cpu_limit="-1"), "'-1'"),
    # the kubernetes client's parser reads these; the API server refuses them, so they are refused before
    "not-a-number": (lambda d: d.with_resources(cpu_limit="NaN"), "'NaN'"),
    "binary-nano": (lambda d: d.with_resources(memory_limit="1ni"), "'1ni'"),
    "request-over-limit": (
        lambda d: d.with_resources(memory_request="3Gi", memory_limit="2Gi"),
        "memory request 3Gi is more than its limit 2Gi",
    ),
    "secret-name": (lambda d: d.with_secret("My_Secret", "/s"), "secret name 'My_Secret' is not a Kubernetes name"),
    "gcp-secret": (lambda d: d.with_gcp_auth("gcp sa"), "'gcp sa'"),
    "secret-env-name": (lambda d: d.with_secret_env("db", {"pw": "1PW"}), "'1PW'"),
    "env-name": (lambda d: d.with_env("MY VAR", 1), "invalid environment variable name 'MY VAR'"),
    "env-name-dot": (lambda d: d.with_env("A.B", 1), "invalid environment variable name 'A.B': use letters, digits and '_'"),
    "volume-name": (lambda d: d.with_empty_dir("Scratch Space", "/scratch"), "volume name 'Scratch Space'"),
    "mount-clash": (lambda d: d.with_empty_dir("other", "/tmp"), "volume 'tmp' is mounted there"),
    "relative-mount": (lambda d: d.with_empty_dir("cache", "cache"), "'cache' must be an absolute path"),
    "replicas": (lambda d: d.with_replicas(-1), "replicas must be an integer"),
    "autoscaling-order": (lambda d: d.with_autoscaling(5, 2), "max_replicas 2 is less than min_replicas 5"),
    "ingress-host": (lambda d: d.with_ingress("crashes.example.com/api"), "ingress host 'crashes.example.com/api'"),
    "ingress-path": (lambda d: d.with_ingress("a.example.com", "api"), "ingress path 'api'"),
    "service-type": (lambda d: d.with_service("External"), "service type 'External'"),
    "node-port-range": (lambda d: d.with_service("NodePort", node_port=80), "node_port must be an integer from 30000 to 32767"),
    "service-account": (lambda d: d.with_service_account("Admin"), "service account 'Admin'"),
    "node-selector": (lambda d: d.with_node_selector("pool", "gpu nodes"), "node selector value 'gpu nodes'"),
    "empty-dir-size": (lambda d: d.with_empty_dir("cache", "/cache", size_limit="big"), "'big'"),
}


@pytest.mark.parametrize(("configure", "message"), BAD.values(), ids=BAD.keys())
def test_bad_values_are_refused_with_a_message_naming_them(configure: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        configure(HmlInferenceDeployment(make_app()))


def test_a_bad_namespace_is_refused() -> None:
    with pytest.raises(ConfigError, match="namespace 'ML_Team'"):
        HmlInferenceDeployment(make_app(), namespace="ML_Team")


def test_a_configurator_must_return_the_deployment() -> None:
    app = make_app()

    @hml.deploy_inference(app.inference)
    def broken(deployment):
        return "not a deployment"

    with pytest.raises(ConfigError, match="function broken must return the deployment"):
        inference_deployment(app)
