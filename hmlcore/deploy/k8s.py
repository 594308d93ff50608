"""The Kubernetes objects of the inference API: :class:`HmlInferenceDeployment`.

``@hml.deploy_inference(app.inference)`` functions receive the deployment and chain ``with_*`` calls on
it; :func:`inference_deployment` runs them. The result builds, with the ``kubernetes`` client's models,
an ``apps/v1`` Deployment, a Service and, on request, an ``autoscaling/v2`` HorizontalPodAutoscaler and
an Ingress, or the same app as a KServe ``InferenceService`` (:meth:`~HmlInferenceDeployment.kserve_manifest`).

The pod runs ``<entrypoint> inference run-prod`` as a non-root user on a read-only root filesystem, with
an emptyDir on ``/tmp`` (``HML_HOME`` lives there). Every name a user gives is checked when it is given,
so a bad one is refused before anything is sent to a cluster.

Example:
    >>> from hmlcore import hml
    >>> app = hml.HmlApp(name="car-crashes", package_entrypoint="crashed", image_url="crashed:1")
    >>> deployment = HmlInferenceDeployment(app).with_replicas(2).with_env("LOG_LEVEL", "debug")
    >>> [m["kind"] for m in deployment.manifests()]
    ['Deployment', 'Service']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from hmlcore._resources import check_quantity, merge_resources
from hmlcore._settings import ContainerSettings
from hmlcore.deploy._k8s_names import (
    check_dns_label,
    check_dns_subdomain,
    check_label,
    k8s_name,
)
from hmlcore.errors import ConfigError
from hmlcore.storage.config import check_env_name

__all__ = ["DeployedApp", "HmlInferenceDeployment", "inference_deployment", "to_yaml"]

_SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")


def _positive_int(value: object, what: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or (maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{what} must be an integer {bound}, got {value!r}")
    return value


class _DeployConfigurators(Protocol):
    @property
    def deploy_configurators(self) -> Sequence[Callable[[Any], Any]]: ...


class DeployedApp(Protocol):
    """What a deployment reads of the app it deploys, once, when it is made (:class:`~hmlcore.app.HmlApp` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def image_url(self) -> str: ...
    @property
    def k8s_namespace(self) -> str: ...
    @property
    def inference_port(self) -> int: ...
    @property
    def cluster_platform(self) -> str | None: ...
    @property
    def env(self) -> Mapping[str, str]: ...
    @property
    def inference(self) -> _DeployConfigurators: ...


class HmlInferenceDeployment(ContainerSettings):
    """The Deployment, Service and optional autoscaler and Ingress of an app's inference API.

    Every ``with_*`` method checks its arguments, changes the deployment and returns it, so calls chain.

    Args:
        app: the app whose name, image, port, namespace and environment the pod uses (read here, not kept).
        image: the image to run (default: ``app.image_url``).
        namespace: the namespace to deploy into (default: ``app.k8s_namespace``).

    Example:
        >>> def deploy_inference(deployment):  # doctest: +SKIP
        ...     return deployment.with_gcp_auth("user-gcp-sa").with_autoscaling(2, 10, 70).with_ingress("crashes.example.com")
    """

    def __init__(self, app: DeployedApp, *, image: str | None = None, namespace: str | None = None) -> None:
        self.name = k8s_name(app.name, "inference")
        self.namespace = check_dns_label(namespace or app.k8s_namespace, "namespace")
        self.image = image or app.image_url
        if not isinstance(self.image, str) or not self.image or any(c.isspace() for c in self.image):
            raise ConfigError(f"invalid image {self.image!r}")
        self.port = app.inference_port
        self.labels = {
            "app.kubernetes.io/name": k8s_name(app.name),
            "app.kubernetes.io/component": "inference",
            "app.kubernetes.io/managed-by": "hmlcore",
        }
        self.replicas = 1
        self.env: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.mounts: dict[str, tuple[str, bool]] = {}
        self.resources: dict[str, dict[str, str]] = {
            "requests": {"cpu": "250m", "memory": "512Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        }
        self.service_type = "ClusterIP"
        self.service_port = 80
        self.node_port: int | None = None
        self.autoscaling: dict[str, int] | None = None
        self.ingress: dict[str, Any] | None = None
        self.service_account: str | None = None
        self.node_selector: dict[str, str] = {}
        self.with_empty_dir("tmp", "/tmp")
        platform = {"HML_PLATFORM": app.cluster_platform} if app.cluster_platform else {}
        self.with_envs({"HML_HOME": "/tmp/hml", **platform, **app.env})

    def __repr__(self) -> str:
        return f"<HmlInferenceDeployment {self.namespace}/{self.name} image={self.image}>"

    # ----------------------------------------------------------------- environment
    def with_env(self, name: str, value: Any) -> HmlInferenceDeployment:
        """Set environment variable ``name`` to ``value`` in the container."""
        self.env[check_env_name(name)] = {"value": str(value)}
        return self

    def with_secret_env(self, secret_name: str, keys_to_env: dict[str, str]) -> HmlInferenceDeployment:
        """Expose keys of Kubernetes secret ``secret_name`` as environment variables (``{key: ENV_NAME}``)."""
        check_dns_subdomain(secret_name, "secret name")
        if not isinstance(keys_to_env, dict) or not keys_to_env:
            raise ConfigError(f"with_secret_env({secret_name!r}) needs a non-empty {{key: ENV_NAME}} dict, got {keys_to_env!r}")
        for key, env_name in keys_to_env.items():
            if not isinstance(key, str) or not key:
                raise ConfigError(f"secret {secret_name!r}: invalid key {key!r}")
            self.env[check_env_name(env_name)] = {"secret": secret_name, "key": key}
        return self

    # ----------------------------------------------------------------- volumes
    def _mount(self, volume: str, source: dict[str, Any], mount_path: str, *, read_only: bool) -> HmlInferenceDeployment:
        if not isinstance(mount_path, str) or not mount_path.startswith("/") or ":" in mount_path:
            raise ConfigError(f"mount path {mount_path!r} must be an absolute path without ':'")
        for other, (path, _) in self.mounts.items():
            if other != volume and path.rstrip("/") == mount_path.rstrip("/"):
                raise ConfigError(f"volume {volume!r} cannot mount at {mount_path!r}: volume {other!r} is mounted there")
        self.volumes[volume] = source
        self.mounts[volume] = (mount_path, read_only)
        return self

    def with_empty_dir(self, name: str, mount_path: str, *, size_limit: str | None = None) -> HmlInferenceDeployment:
        """Mount a writable emptyDir volume called ``name`` at ``mount_path`` (the same name replaces it)."""
        check_dns_label(name, "volume name")
        source: dict[str, Any] = {"emptyDir": {}}
        if size_limit is not None:
            source["emptyDir"]["sizeLimit"] = check_quantity(size_limit, f"emptyDir {name} size_limit")
        return self._mount(name, source, mount_path, read_only=False)

    def with_secret(self, secret_name: str, mount_path: str) -> HmlInferenceDeployment:
        """Mount Kubernetes secret ``secret_name`` read-only at ``mount_path``."""
        check_dns_subdomain(secret_name, "secret name")
        return self._mount(k8s_name("secret", secret_name), {"secret": {"secretName": secret_name}}, mount_path, read_only=True)

    # ----------------------------------------------------------------- scheduling and scale
    def with_resources(
        self,
        *,
        cpu_request: str | None = None,
        cpu_limit: str | None = None,
        memory_request: str | None = None,
        memory_limit: str | None = None,
    ) -> HmlInferenceDeployment:
        """Set CPU and memory requests and limits (``"500m"``, ``"2"``, ``"1Gi"``...); a request may not exceed its limit."""
        self.resources = merge_resources(
            self.resources, cpu_request=cpu_request, cpu_limit=cpu_limit, memory_request=memory_request, memory_limit=memory_limit
        )
        return self

    def with_replicas(self, replicas: int) -> HmlInferenceDeployment:
        """Run ``replicas`` pods (ignored once :meth:`with_autoscaling` is set)."""
        self.replicas = _positive_int(replicas, "replicas", minimum=0)
        return self

    def with_autoscaling(self, min_replicas: int, max_replicas: int, cpu_percent: int = 80) -> HmlInferenceDeployment:
        """Scale between ``min_replicas`` and ``max_replicas`` pods to keep CPU use near ``cpu_percent`` of the request."""
        low = _positive_int(min_replicas, "min_replicas")
        high = _positive_int(max_replicas, "max_replicas")
        if high < low:
            raise ConfigError(f"max_replicas {high} is less than min_replicas {low}")
        self.autoscaling = {"min": low, "max": high, "cpu": _positive_int(cpu_percent, "cpu_percent", maximum=1000)}
        return self

    def with_service(self, service_type: str = "ClusterIP", *, port: int = 80, node_port: int | None = None) -> HmlInferenceDeployment:
        """Expose the pods with a Service of ``service_type`` (``ClusterIP``, ``NodePort``, ``LoadBalancer``) on ``port``."""
        if service_type not in _SERVICE_TYPES:
            raise ConfigError(f"service type {service_type!r} is not one of {', '.join(_SERVICE_TYPES)}")
        if node_port is not None and service_type == "ClusterIP":
            raise ConfigError(f"node_port {node_port} needs service type NodePort or LoadBalancer")
        self.service_type = service_type
        self.service_port = _positive_int(port, "service port", maximum=65535)
        self.node_port = None if node_port is None else _positive_int(node_port, "node_port", minimum=30000, maximum=32767)
        return self

    def with_ingress(
        self, host: str, path: str = "/", *, ingress_class: str | None = None, tls_secret: str | None = None
    ) -> HmlInferenceDeployment:
        """Route ``http(s)://host/path`` to the Service through an Ingress."""
        check_dns_subdomain(host, "ingress host")
        if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
            raise ConfigError(f"ingress path {path!r} must start with '/' and hold no spaces")
        self.ingress = {
            "host": host,
            "path": path,
            "class": None if ingress_class is None else check_dns_subdomain(ingress_class, "ingress class"),
            "tls": None if tls_secret is None else check_dns_subdomain(tls_secret, "TLS secret name"),
        }
        return self

    def with_service_account(self, name: str) -> HmlInferenceDeployment:
        """Run the pods as Kubernetes service account ``name``."""
        self.service_account = check_dns_subdomain(name, "service account")
        return self

    def with_node_selector(self, key: str, value: str) -> HmlInferenceDeployment:
        """Schedule the pods only on nodes labelled ``key=value``."""
        key, value = check_label(key, value, "node selector")
        self.node_selector[key] = value
        return self

    # ----------------------------------------------------------------- building
    def build(self) -> list[Any]:
        """The objects to apply, as ``kubernetes.client`` models: Deployment, Service[, HPA][, Ingress]."""
        from hmlcore.deploy._k8s_build import build_objects  # it loads the kubernetes client (~0.3 s), which --help must not

        return build_objects(self)

    def manifests(self) -> list[dict[str, Any]]:
        """The objects to apply as plain dicts (what ``kubectl apply -f`` reads)."""
        from kubernetes.client import ApiClient  # ~0.3 s: only when manifests are built, never for --help

        client = ApiClient()
        try:
            return [client.sanitize_for_serialization(obj) for obj in self.build()]
        finally:
            client.close()

    def kserve_manifest(self) -> dict[str, Any]:
        """The same app as a KServe ``InferenceService`` with a custom predictor container."""
        from hmlcore.deploy._k8s_build import kserve_manifest  # it loads the kubernetes client, which --help must not

        return kserve_manifest(self)


def inference_deployment(app: DeployedApp, *, image: str | None = None, namespace: str | None = None) -> HmlInferenceDeployment:
    """A deployment of ``app``'s inference API with every ``@hml.deploy_inference`` configurator applied.

    Raises:
        ConfigError: a configurator gave a bad value or returned something other than the deployment.
    """
    deployment = HmlInferenceDeployment(app, image=image, namespace=namespace)
    for configure in app.inference.deploy_configurators:
        result = configure(deployment)
        if result is not None and result is not deployment:
            name = getattr(configure, "__name__", repr(configure))
            raise ConfigError(f"@hml.deploy_inference function {name} must return the deployment it was given (or None)")
    return deployment


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """``manifests`` as one multi-document YAML text, keys in Kubernetes' order."""
    import yaml  # only when manifests are printed

    return "---\n".join(yaml.safe_dump(m, sort_keys=False) for m in manifests)
