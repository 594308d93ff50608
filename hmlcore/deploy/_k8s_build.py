"""Turn an :class:`~hmlcore.deploy.k8s.HmlInferenceDeployment` into ``kubernetes.client`` models.

Imported only when manifests are built, so the command line starts without the ``kubernetes`` client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from kubernetes import client as k

from hmlcore.serving.server import DEFAULT_DRAIN_SECONDS

__all__ = ["KSERVE_API_VERSION", "RUN_AS_USER", "InferencePod", "build_objects", "kserve_manifest"]

RUN_AS_USER = 10001  # the uid app.Dockerfile creates
KSERVE_API_VERSION = "serving.kserve.io/v1beta1"


class InferencePod(Protocol):
    """What the objects are built from: the settings of an :class:`~hmlcore.deploy.k8s.HmlInferenceDeployment`."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def image(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def replicas(self) -> int: ...
    @property
    def env(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def volumes(self) -> Mapping[str, Mapping[str, Any]]: ...
    @property
    def mounts(self) -> Mapping[str, tuple[str, bool]]: ...
    @property
    def resources(self) -> Mapping[str, Mapping[str, str]]: ...
    @property
    def service_type(self) -> str: ...
    @property
    def service_port(self) -> int: ...
    @property
    def node_port(self) -> int | None: ...
    @property
    def autoscaling(self) -> Mapping[str, int] | None: ...
    @property
    def ingress(self) -> Mapping[str, Any] | None: ...
    @property
    def service_account(self) -> str | None: ...
    @property
    def node_selector(self) -> Mapping[str, str]: ...


def _meta(d: InferencePod) -> k.V1ObjectMeta:
    return k.V1ObjectMeta(name=d.name, namespace=d.namespace, labels=dict(d.labels))


def _env(d: InferencePod) -> list[k.V1EnvVar]:
    env = []
    for name, spec in d.env.items():
        if "secret" in spec:
            source = k.V1EnvVarSource(secret_key_ref=k.V1SecretKeySelector(name=spec["secret"], key=spec["key"]))
            env.append(k.V1EnvVar(name=name, value_from=source))
        else:
            env.append(k.V1EnvVar(name=name, value=spec["value"]))
    return env


def _volumes(d: InferencePod) -> list[k.V1Volume]:
    volumes = []
    for name, source in d.volumes.items():
        if "secret" in source:
            volumes.append(k.V1Volume(name=name, secret=k.V1SecretVolumeSource(secret_name=source["secret"]["secretName"])))
        else:
            volumes.append(k.V1Volume(name=name, empty_dir=k.V1EmptyDirVolumeSource(size_limit=source["emptyDir"].get("sizeLimit"))))
    return volumes


def _probe(path: str, port: int | str, *, period: int, failures: int) -> k.V1Probe:
    return k.V1Probe(http_get=k.V1HTTPGetAction(path=path, port=port), period_seconds=period, timeout_seconds=3, failure_threshold=failures)


#: seconds the pod keeps serving after Kubernetes begins to stop it, before SIGTERM: the time endpoints and
#: balancers need to stop sending it new connections
PRE_STOP_SECONDS = 5
#: seconds gunicorn gives its workers to finish their requests once the drain is over (run-prod's ``--timeout``)
GRACEFUL_SECONDS = 30


def _drain_seconds(d: InferencePod) -> int:
    """How long run-prod keeps serving after SIGTERM: ``HML_DRAIN_SECONDS`` if the deployment sets it, else the default."""
    given = d.env.get("HML_DRAIN_SECONDS", {}).get("value")
    try:
        return math.ceil(float(given)) if given is not None else DEFAULT_DRAIN_SECONDS
    except ValueError:
        return DEFAULT_DRAIN_SECONDS


def _container(d: InferencePod, *, name: str, port_name: str | None, startup_probe: bool) -> k.V1Container:
    port: int | str = port_name or d.port
    # Knative (KServe) refuses lifecycle hooks: it drains a revision's pods itself
    pre_stop = k.V1LifecycleHandler(_exec=k.V1ExecAction(command=["sleep", str(PRE_STOP_SECONDS)])) if startup_probe else None
    return k.V1Container(
        name=name,
        image=d.image,
        args=["inference", "run-prod", "--port", str(d.port)],
        ports=[k.V1ContainerPort(name=port_name, container_port=d.port, protocol="TCP")],
        env=_env(d),
        lifecycle=k.V1Lifecycle(pre_stop=pre_stop) if pre_stop else None,
        resources=k.V1ResourceRequirements(requests=dict(d.resources["requests"]), limits=dict(d.resources["limits"])),
        # models load before gunicorn listens: the startup probe gives them up to 5 minutes
        startup_probe=_probe("/healthz", port, period=5, failures=60) if startup_probe else None,
        liveness_probe=_probe("/healthz", port, period=10, failures=3),
        readiness_probe=_probe("/readyz", port, period=5, failures=2),
        security_context=k.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS_USER,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k.V1SeccompProfile(type="RuntimeDefault"),
        ),
        volume_mounts=[k.V1VolumeMount(name=v, mount_path=path, read_only=ro or None) for v, (path, ro) in d.mounts.items()],
    )


def _pod_spec(d: InferencePod) -> k.V1PodSpec:
    return k.V1PodSpec(
        containers=[_container(d, name="inference", port_name="http", startup_probe=True)],
        volumes=_volumes(d),
        service_account_name=d.service_account,
        node_selector=dict(d.node_selector) or None,
        # the preStop pause, the drain after SIGTERM, gunicorn's graceful timeout, and a margin: no request is cut
        termination_grace_period_seconds=PRE_STOP_SECONDS + _drain_seconds(d) + GRACEFUL_SECONDS + 5,
        automount_service_account_token=bool(d.service_account),
    )


def build_objects(d: InferencePod) -> list[Any]:
    """Deployment, Service, then the HorizontalPodAutoscaler and the Ingress if they were asked for."""
    selector = {key: d.labels[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/component")}
    deployment = k.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_meta(d),
        spec=k.V1DeploymentSpec(
            # with an autoscaler the replica count is its business: applying one would undo its scaling
            replicas=None if d.autoscaling else d.replicas,
            selector=k.V1LabelSelector(match_labels=selector),
            strategy=k.V1DeploymentStrategy(rolling_update=k.V1RollingUpdateDeployment(max_surge=1, max_unavailable=0)),
            revision_history_limit=5,
            template=k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=dict(d.labels)), spec=_pod_spec(d)),
        ),
    )
    service = k.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(d),
        spec=k.V1ServiceSpec(
            type=d.service_type,
            selector=selector,
            ports=[k.V1ServicePort(name="http", port=d.service_port, target_port="http", protocol="TCP", node_port=d.node_port)],
        ),
    )
    objects: list[Any] = [deployment, service]
    if d.autoscaling:
        target = k.V2MetricTarget(type="Utilization", average_utilization=d.autoscaling["cpu"])
        objects.append(
            k.V2HorizontalPodAutoscaler(
                api_version="autoscaling/v2",
                kind="HorizontalPodAutoscaler",
                metadata=_meta(d),
                spec=k.V2HorizontalPodAutoscalerSpec(
                    scale_target_ref=k.V2CrossVersionObjectReference(api_version="apps/v1", kind="Deployment", name=d.name),
                    min_replicas=d.autoscaling["min"],
                    max_replicas=d.autoscaling["max"],
                    metrics=[k.V2MetricSpec(type="Resource", resource=k.V2ResourceMetricSource(name="cpu", target=target))],
                ),
            )
        )
    if d.ingress:
        ingress = d.ingress
        backend = k.V1IngressBackend(service=k.V1IngressServiceBackend(name=d.name, port=k.V1ServiceBackendPort(name="http")))
        path = k.V1HTTPIngressPath(path=ingress["path"], path_type="Prefix", backend=backend)
        objects.append(
            k.V1Ingress(
                api_version="networking.k8s.io/v1",
                kind="Ingress",
                metadata=_meta(d),
                spec=k.V1IngressSpec(
                    ingress_class_name=ingress["class"],
                    rules=[k.V1IngressRule(host=ingress["host"], http=k.V1HTTPIngressRuleValue(paths=[path]))],
                    tls=[k.V1IngressTLS(hosts=[ingress["host"]], secret_name=ingress["tls"])] if ingress["tls"] else None,
                ),
            )
        )
    return objects


#: the pod fields Knative Serving admits with its default feature flags (serving's PodSpecMask); KServe's
#: Serverless (Knative) mode runs the predictor as a Knative Service, so any other field is refused there
KNATIVE_POD_FIELDS = frozenset({"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks"})
#: the container fields Knative drops or refuses (serving's ContainerMask)
KNATIVE_REFUSED_CONTAINER_FIELDS = ("lifecycle", "stdin", "stdinOnce", "tty", "volumeDevices")
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"


def knative_refused_fields(pod: dict[str, Any]) -> list[str]:
    """The fields of ``pod`` (a serialised pod spec) that Knative refuses with its default feature flags.

    ``automountServiceAccountToken`` is admitted only when ``false``.
    """
    refused = []
    for key, value in pod.items():
        if key == "automountServiceAccountToken" and value is False:
            continue
        if key not in KNATIVE_POD_FIELDS and value not in (None, [], {}):
            refused.append(f"spec.template.spec.{key}")
    for container in pod.get("containers", []):
        refused += [f"spec.template.spec.containers.{key}" for key in KNATIVE_REFUSED_CONTAINER_FIELDS if container.get(key)]
    return refused


def kserve_manifest(d: InferencePod) -> dict[str, Any]:
    """An ``InferenceService`` whose predictor is the app's own container (KServe "custom predictor").

    KServe's Serverless (Knative) mode admits only what Knative does: one unnamed port, and of the pod's
    fields the containers, volumes and service account (:func:`knative_refused_fields`), and it scales on
    concurrency or requests, not CPU. So the InferenceService asks for
    ``serving.kserve.io/deploymentMode: RawDeployment`` (a Deployment scaled by an HPA) whenever the pod
    needs more (a service account's token, a node selector...) or
    :meth:`~hmlcore.deploy.k8s.HmlInferenceDeployment.with_autoscaling` sets a CPU target; otherwise it runs in
    whichever mode the cluster defaults to.
    """
    api = k.ApiClient()
    try:
        pod = api.sanitize_for_serialization(_pod_spec(d))
        pod.pop("terminationGracePeriodSeconds", None)  # Knative sets its own from the revision's timeout; KServe's raw mode too
        pod["containers"] = [api.sanitize_for_serialization(_container(d, name="kserve-container", port_name=None, startup_probe=False))]
        metadata = api.sanitize_for_serialization(_meta(d))
    finally:
        api.close()
    raw = bool(d.autoscaling) or bool(knative_refused_fields(pod))
    if raw:
        metadata["annotations"] = {DEPLOYMENT_MODE: "RawDeployment"}
    scale = d.autoscaling or {"min": d.replicas, "max": max(d.replicas, 1)}
    predictor: dict[str, Any] = {"minReplicas": scale["min"], "maxReplicas": scale["max"]}
    if d.autoscaling:  # the HPA of the raw mode scales on CPU utilisation
        predictor.update({"scaleMetric": "cpu", "scaleMetricType": "Utilization", "scaleTarget": d.autoscaling["cpu"]})
    predictor.update(pod)
    return {
        "apiVersion": KSERVE_API_VERSION,
        "kind": "InferenceService",
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }
