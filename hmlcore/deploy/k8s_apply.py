"""Apply manifests to a Kubernetes cluster and follow the rollout: what ``inference deploy`` does.

Each object goes to the API server as a server-side apply (``PATCH`` with
``application/apply-patch+yaml``, field manager ``hmlcore``): created if missing, patched if present,
never deleted and recreated. ``dry_run`` asks the server to validate and default the object without
persisting it. Every result says what changed, field by field, compared with what the cluster held.

Example:
    >>> client = KubeClient.from_config()  # doctest: +SKIP
    >>> for manifest in deployment.manifests():  # doctest: +SKIP
    ...     print(client.apply(manifest).line())
    deployment.apps/car-crashes-inference created
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hmlcore import _env
from hmlcore.errors import DeployError

__all__ = ["FIELD_MANAGER", "ApplyResult", "KubeApiError", "KubeClient"]

FIELD_MANAGER = "hmlcore"


class KubeApiError(DeployError):
    """Raised if the Kubernetes API refused a request: ``status`` is the HTTP status, ``message`` the server's reason."""

    def __init__(self, text: str, *, status: int, message: str) -> None:
        super().__init__(text)
        self.status = status
        self.message = message


def _changes(wanted: Any, current: Any, path: str) -> list[str]:
    """The paths under ``path`` where ``wanted`` holds something ``current`` does not."""
    if isinstance(wanted, dict):
        if not isinstance(current, dict):
            return [path]
        return [c for key, value in wanted.items() for c in _changes(value, current.get(key), f"{path}.{key}" if path else key)]
    if isinstance(wanted, list):
        if not isinstance(current, list):
            return [path]
        named = all(isinstance(x, dict) and "name" in x for x in wanted + current)
        if named:
            by_name = {x["name"]: x for x in current}
            found = [c for x in wanted for c in _changes(x, by_name.get(x["name"]), f"{path}[{x['name']}]")]
            gone = [f"{path}[{x['name']}]" for x in current if x["name"] not in {w["name"] for w in wanted}]
            return found + gone
        if len(wanted) != len(current):
            return [path]
        return [c for i, (w, k) in enumerate(zip(wanted, current, strict=True)) for c in _changes(w, k, f"{path}[{i}]")]
    if wanted != current and str(wanted) != str(current):  # the server may give "1" back as 1
        return [path]
    return []


@dataclass
class ApplyResult:
    """What applying one object did.

    Attributes:
        name: ``deployment.apps/car-crashes-inference`` (kubectl's way of naming it).
        action: ``created``, ``configured`` or ``unchanged``.
        changes: the fields that changed (for ``configured``).
        dry_run: the server only validated the object; nothing was stored.
        result: the object as the server answered it.
    """

    name: str
    action: str
    changes: list[str] = field(default_factory=list)
    dry_run: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """One line for the terminal, like kubectl's: ``service/x configured: spec.ports[http].port``."""
        text = f"{self.name} {self.action}{' (server dry run)' if self.dry_run else ''}"
        if self.changes:
            shown = ", ".join(self.changes[:6]) + (f" and {len(self.changes) - 6} more" if len(self.changes) > 6 else "")
            text += f": {shown}"
        return text


class KubeClient:
    """A small client over ``kubernetes``' ApiClient: apply objects, read them, follow a rollout.

    Args:
        api_client: a configured ``kubernetes.client.ApiClient``.
        timeout: seconds one request may take.
    """

    def __init__(self, api_client: Any, *, timeout: float = 30) -> None:
        self.api = api_client
        self.timeout = timeout
        self._discovered: Any = None
        self._cache: str | None = None

    @classmethod
    def from_config(cls, *, kubeconfig: str | None = None, context: str | None = None, timeout: float = 30) -> KubeClient:
        """Connect with ``kubeconfig`` (default ``$KUBECONFIG``, then ``~/.kube/config``), else the in-cluster account.

        Raises:
            DeployError: no usable kubeconfig and not running in a pod, or the kubeconfig is broken.
        """
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        path = kubeconfig or _env.KUBECONFIG.get() or os.path.expanduser("~/.kube/config")
        configuration = client.Configuration()
        configuration.retries = 1
        if kubeconfig or any(os.path.exists(p) for p in path.split(os.pathsep) if p):
            try:
                config.load_kube_config(config_file=path, context=context, client_configuration=configuration, persist_config=False)
            except (ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
                raise DeployError(f"cannot use kubeconfig {path}: {_one_line(exc)}") from None
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except ConfigException:
                raise DeployError(
                    f"no Kubernetes configuration: {path} does not exist (set KUBECONFIG or --kubeconfig) and this is not a pod"
                ) from None
        return cls(client.ApiClient(configuration), timeout=timeout)

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()
        if self._cache is not None:
            shutil.rmtree(self._cache, ignore_errors=True)

    def object_path(self, manifest: dict[str, Any]) -> tuple[str, str]:
        """The API path of ``manifest``'s object and its kubectl-style name (``deployment.apps/NAME``).

        The cluster says where each kind lives (API discovery, through ``kubernetes.dynamic.DynamicClient``):
        asked once per client, kept in a cache file of this client's own that :meth:`close` removes, so a
        kind installed since (KServe...) is found at the next deploy.

        Raises:
            DeployError: the cluster does not serve that kind (a KServe InferenceService without KServe...),
                or is unreachable.
            KubeApiError: the cluster refused discovery.
        """
        from kubernetes.client.exceptions import ApiException
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.exceptions import ResourceNotFoundError, ResourceNotUniqueError
        from urllib3.exceptions import HTTPError

        api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
        try:
            if self._discovered is None:
                self._cache = tempfile.mkdtemp(prefix="hml-k8s-discovery-")
                self._discovered = DynamicClient(self.api, cache_file=os.path.join(self._cache, "discovery.json"))
            resource = self._discovered.resources.get(api_version=api_version, kind=kind)
        except (ResourceNotFoundError, ResourceNotUniqueError):
            raise DeployError(f"cannot deploy a {kind} of apiVersion {api_version}: the cluster at {self.host} does not serve it") from None
        except ValueError as exc:  # the library's words for an http:// host that speaks https, or a malformed apiVersion
            raise DeployError(f"cannot deploy a {kind} of apiVersion {api_version} to {self.host}: {_one_line(exc)}") from None
        except ApiException as exc:
            reason = _status_message(exc.body)
            text = f"the Kubernetes API at {self.host} refused API discovery: {exc.status} {exc.reason}: {reason}"
            raise KubeApiError(text, status=int(exc.status or 0), message=reason) from None
        except (HTTPError, OSError) as exc:
            raise DeployError(f"cannot reach the Kubernetes API at {self.host}: {_network_reason(exc)}") from None
        meta = manifest["metadata"]
        name = f"{resource.singular_name}.{resource.group}" if resource.group else resource.singular_name
        return resource.path(name=meta["name"], namespace=meta["namespace"]), f"{name}/{meta['name']}"

    def request(
        self, method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None = None, content_type: str | None = None
    ) -> Any:
        """Send one request; the JSON answer, or ``None`` for a GET of a missing object.

        Raises:
            KubeApiError: the server refused the request (the message says its status and reason).
            DeployError: the server is unreachable.
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            response = self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=self.timeout,
            )
        except ApiException as exc:
            if exc.status == 404 and method == "GET":
                return None
            reason = _status_message(exc.body)
            text = f"the Kubernetes API at {self.host} refused {method} {path}: {exc.status} {exc.reason}: {reason}"
            raise KubeApiError(text, status=int(exc.status or 0), message=reason) from None
        except (HTTPError, OSError) as exc:
            raise DeployError(f"cannot reach the Kubernetes API at {self.host}: {_network_reason(exc)}") from None
        return json.loads(response.data or b"null")

    def apply(self, manifest: dict[str, Any], *, dry_run: bool = False) -> ApplyResult:
        """Create or patch ``manifest``'s object by server-side apply; report what changed."""
        path, name = self.object_path(manifest)
        before = self.request("GET", path)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")] + ([("dryRun", "All")] if dry_run else [])
        after = self.request("PATCH", path, body=manifest, query=query, content_type="application/apply-patch+yaml")
        if before is None:
            return ApplyResult(name, "created", dry_run=dry_run, result=after)
        wanted = {key: value for key, value in manifest.items() if key not in ("apiVersion", "kind", "metadata")}
        wanted["metadata"] = {key: manifest["metadata"][key] for key in ("labels", "annotations") if key in manifest["metadata"]}
        changes = _changes(wanted, before, "")
        return ApplyResult(name, "configured" if changes else "unchanged", changes, dry_run=dry_run, result=after)

    def wait_for_rollout(
        self, manifest: dict[str, Any], *, timeout: float = 300, interval: float = 2, echo: Callable[[str], None] = print
    ) -> None:
        """Follow the rollout of a Deployment (or the readiness of an InferenceService) until it is done.

        Prints each new state with ``echo``; polls quickly at first, then every ``interval`` seconds.

        Raises:
            DeployError: the rollout failed (its progress deadline passed) or is not done after ``timeout`` seconds.
        """
        path, name = self.object_path(manifest)
        check = _deployment_status if manifest["kind"] == "Deployment" else _condition_status
        deadline = time.monotonic() + timeout
        delay = min(0.25, interval)  # look often at first, then every ``interval`` seconds
        said = ""
        while True:
            current = self.request("GET", path)
            if current is None:
                raise DeployError(f"{name} disappeared while waiting for its rollout")
            done, message = check(current)
            if message != said:
                echo(message)
                said = message
            if done:
                return
            if time.monotonic() >= deadline:
                raise DeployError(f"{name} is not ready after {timeout:g}s: {message}")
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * 1.5, interval)


def _deployment_status(deployment: dict[str, Any]) -> tuple[bool, str]:
    """(done, message) for a Deployment, the way ``kubectl rollout status`` reads its status."""
    name = deployment["metadata"]["name"]
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    if deployment["metadata"].get("generation", 0) > status.get("observedGeneration", -1):
        return False, f"Waiting for deployment {name} spec update to be observed..."
    for condition in status.get("conditions", []):
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            raise DeployError(f"deployment {name} rollout failed: {condition.get('message', 'progress deadline exceeded')}")
    wanted = spec.get("replicas", 1)
    updated, total, available = (status.get(key, 0) for key in ("updatedReplicas", "replicas", "availableReplicas"))
    if updated < wanted:
        return False, f"Waiting for deployment {name} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
    if total > updated:
        return False, f"Waiting for deployment {name} rollout to finish: {total - updated} old replicas are pending termination..."
    if available < updated:
        return False, f"Waiting for deployment {name} rollout to finish: {available} of {updated} updated replicas are available..."
    return True, f"deployment {name} successfully rolled out"


def _condition_status(resource: dict[str, Any]) -> tuple[bool, str]:
    """(done, message) for an object that reports a ``Ready`` condition (a KServe InferenceService)."""
    name = f"{resource['kind'].lower()}/{resource['metadata']['name']}"
    for condition in resource.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            if condition.get("status") == "True":
                return True, f"{name} is ready"
            return False, f"Waiting for {name}: {condition.get('reason') or 'not ready'} {condition.get('message') or ''}".rstrip()
    return False, f"Waiting for {name} to report its readiness..."


def _status_message(body: Any) -> str:
    try:
        return _one_line(json.loads(body)["message"])
    except (TypeError, ValueError, KeyError):
        return _one_line(body or "no details")


def _network_reason(exc: Exception) -> str:
    """The root of a connection failure (``[Errno 111] Connection refused``), not urllib3's retry story."""
    text = str(getattr(exc, "reason", None) or exc)
    found = re.search(r"\[Errno -?\d+\][^\"')]*", text)
    return found.group(0).strip() if found else _one_line(text)


def _one_line(value: Any) -> str:
    return " ".join(str(value).split())[:500]
