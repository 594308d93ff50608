"""A small stand-in for the Kubernetes API server, for testing ``inference deploy`` without a cluster.

No real kube-apiserver can run in the test environment, so this speaks the documented REST paths of the
objects hmlcore deploys (Deployment, Service, HorizontalPodAutoscaler, Ingress, KServe InferenceService):
``GET`` reads one, ``PATCH`` with ``application/apply-patch+yaml`` is a server-side apply (``fieldManager``
required, ``dryRun=All`` stores nothing, ``force``), answered with the stored object. Like a real server it
checks the bearer token (401, or 403 for the ``forbidden`` token), validates built-in kinds strictly
against the Kubernetes 1.30 schemas (422 on an unknown field), keeps ``uid`` across applies, bumps
``resourceVersion`` and ``generation`` only on change, defaults ``spec.replicas`` and a Service's
``clusterIP``, and answers errors with a ``Status`` body. A Deployment's status then moves one step per
``GET`` through a rollout (``rollout="ok"``), stays short of available (``"stuck"``) or reports
``ProgressDeadlineExceeded`` (``"fail"``). The client finds where each kind lives by API discovery, so the
server answers the discovery documents too (``/version``, ``/api``, ``/api/v1``, ``/apis`` and
``/apis/<group>/<version>``: ``APIVersions``, ``APIGroupList``, ``APIResourceList``), for the kinds it serves
(``kserve=False``: a cluster without KServe). It binds 127.0.0.1 only and runs until the ``with`` block ends.

It records every request in :attr:`FakeKubeApiServer.requests` so tests can assert what was sent
(and that nothing was deleted or replaced).
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from ._fake_api import FakeJsonApi

TOKEN = "test-token"
FORBIDDEN_TOKEN = "forbidden"
_PATH = re.compile(
    r"^/(?P<group>api/v1|apis/[a-z0-9.]+/v[0-9a-z]+)/namespaces/(?P<ns>[a-z0-9-]+)/(?P<plural>[a-z]+)/(?P<name>[a-z0-9.-]+)$"
)
_KINDS = {
    ("api/v1", "services"): ("v1", "Service"),
    ("apis/apps/v1", "deployments"): ("apps/v1", "Deployment"),
    ("apis/autoscaling/v2", "horizontalpodautoscalers"): ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("apis/networking.k8s.io/v1", "ingresses"): ("networking.k8s.io/v1", "Ingress"),
    ("apis/serving.kserve.io/v1beta1", "inferenceservices"): ("serving.kserve.io/v1beta1", "InferenceService"),
}


class FakeKubeApiServer(FakeJsonApi):
    """The fake API server; use it as a context manager. ``url`` is its address."""

    def __init__(self, *, rollout: str = "ok", kserve: bool = True) -> None:
        super().__init__()
        self.rollout = rollout
        self.kinds = {key: value for key, value in _KINDS.items() if kserve or value[1] != "InferenceService"}
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._statuses: dict[str, list[dict[str, Any]]] = {}
        self._version = 100
        self._lock = threading.Lock()

    def write_kubeconfig(self, directory: Path, *, token: str = TOKEN, namespace: str = "default") -> Path:
        """A kubeconfig whose current context points at this server with ``token``."""
        return write_kubeconfig(directory, self.url, token=token, namespace=namespace)

    # ----------------------------------------------------------------- behaviour
    def _status(self, code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason}
        return code, {**body, "code": code}

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests.append({"method": method, "path": path, "query": query, "content_type": headers.get("Content-Type")})
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        if token not in (TOKEN, FORBIDDEN_TOKEN):
            return self._status(401, "Unauthorized", "Unauthorized")
        if method == "GET" and (found := self._discovery(path)) is not None:
            return 200, found
        match = _PATH.match(path)
        if not match or (match["group"], match["plural"]) not in self.kinds:
            return self._status(404, "NotFound", "the server could not find the requested resource")
        api_version, kind = self.kinds[(match["group"], match["plural"])]
        resource = f"{match['plural']}.{match['group'].split('/')[1] if match['group'].startswith('apis/') else ''}".rstrip(".")
        if token == FORBIDDEN_TOKEN:
            verb = {"GET": "get", "PATCH": "patch"}.get(method, method.lower())
            where = f'resource "{match["plural"]}" in the namespace "{match["ns"]}"'
            message = f'{resource} "{match["name"]}" is forbidden: User "tester" cannot {verb} {where}'
            return self._status(403, "Forbidden", message)
        with self._lock:
            if method == "GET":
                return self._get(path, resource, match["name"])
            if method == "PATCH":
                return self._apply(path, resource, match, api_version, kind, query, headers, body)
        return self._status(405, "MethodNotAllowed", f"{method} is not supported by this test server")

    def _discovery(self, path: str) -> dict[str, Any] | None:
        """The discovery documents (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``), or None."""
        versions: dict[str, list[tuple[str, str]]] = {}
        for (prefix, plural), (_, kind) in self.kinds.items():
            versions.setdefault(prefix, []).append((plural, kind))
        if path == "/version":
            return {"major": "1", "minor": "30", "gitVersion": "v1.30.0", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/apis":
            groups = []
            for prefix in versions:
                if prefix.startswith("apis/"):
                    group, version = prefix.removeprefix("apis/").split("/")
                    entry = {"groupVersion": f"{group}/{version}", "version": version}
                    groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}
        served = versions.get(path.lstrip("/"))
        if served is None:
            return None
        resources = []
        for plural, kind in served:
            verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
            resources.append({"name": plural, "singularName": kind.lower(), "namespaced": True, "kind": kind, "verbs": verbs})
            resources.append({"name": f"{plural}/status", "singularName": "", "namespaced": True, "kind": kind, "verbs": ["get", "patch"]})
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": path.split("/", 2)[-1], "resources": resources}

    def _get(self, path: str, resource: str, name: str) -> tuple[int, dict[str, Any]]:
        stored = self.objects.get(path)
        if stored is None:
            return self._status(404, "NotFound", f'{resource} "{name}" not found')
        steps = self._statuses.get(path)
        if steps:
            stored["status"] = steps.pop(0) if len(steps) > 1 else steps[0]
        return 200, stored

    def _apply(
        self, path: str, resource: str, match: re.Match[str], api_version: str, kind: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        if headers.get("Content-Type") != "application/apply-patch+yaml":
            return self._status(415, "UnsupportedMediaType", f"only server-side apply is served, not {headers.get('Content-Type')}")
        if not query.get("fieldManager"):
            return self._status(400, "BadRequest", "fieldManager is required for apply requests")
        try:
            applied = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            return self._status(400, "BadRequest", f"error decoding YAML: {exc}")
        meta = applied.get("metadata") or {}
        if (applied.get("apiVersion"), applied.get("kind")) != (api_version, kind):
            return self._status(400, "BadRequest", f"the body is a {applied.get('kind')}, the path names {kind}")
        if meta.get("name") != match["name"] or meta.get("namespace", match["ns"]) != match["ns"]:
            return self._status(400, "BadRequest", "the name or namespace of the body does not match the path")
        if kind != "InferenceService":
            try:
                kubernetes_validate.validate(applied, "1.30", strict=True)
            except kubernetes_validate.ValidationError as exc:
                return self._status(422, "Invalid", f'{kind} "{match["name"]}" is invalid: {exc.message}')
        before = self.objects.get(path)
        after = self._merge(before, applied, kind)
        if query.get("dryRun") == "All":
            return (200 if before else 201), after
        if before is None or after["spec"] != before["spec"] or after["metadata"].get("labels") != before["metadata"].get("labels"):
            self._version += 1
            after["metadata"]["resourceVersion"] = str(self._version)
            if before is None or after["spec"] != before["spec"]:
                after["metadata"]["generation"] = after["metadata"].get("generation", 0) + 1
                self._start_rollout(path, after)
        self.objects[path] = after
        return (200 if before else 201), after

    def _merge(self, before: dict[str, Any] | None, applied: dict[str, Any], kind: str) -> dict[str, Any]:
        after = copy.deepcopy(applied)
        old_meta = (before or {}).get("metadata", {})
        after["metadata"] = {
            **after["metadata"],
            "uid": old_meta.get("uid") or str(uuid.uuid4()),
            "resourceVersion": old_meta.get("resourceVersion", str(self._version)),
            "generation": old_meta.get("generation", 0),
        }
        spec = after.setdefault("spec", {})
        if kind == "Deployment" and "replicas" not in spec:
            spec["replicas"] = (before or {}).get("spec", {}).get("replicas", 1)
        if kind == "Service":
            spec["clusterIP"] = (before or {}).get("spec", {}).get("clusterIP", "10.96.0.42")
        after["status"] = copy.deepcopy((before or {}).get("status", {}))
        return after

    def _start_rollout(self, path: str, obj: dict[str, Any]) -> None:
        generation = obj["metadata"]["generation"]
        if obj["kind"] == "InferenceService":
            waiting = {"conditions": [{"type": "Ready", "status": "False", "reason": "PredictorNotReady"}]}
            self._statuses[path] = [waiting, waiting, {"conditions": [{"type": "Ready", "status": "True"}]}]
            return
        if obj["kind"] != "Deployment":
            return
        wanted = obj["spec"]["replicas"]
        old = {**obj.get("status", {}), "observedGeneration": generation - 1}
        steps = [old] + [
            {"observedGeneration": generation, "replicas": wanted, "updatedReplicas": n, "availableReplicas": max(n - 1, 0)}
            for n in range(1, wanted + 1)
        ]
        if self.rollout == "stuck":
            steps.append({"observedGeneration": generation, "replicas": wanted, "updatedReplicas": wanted, "availableReplicas": 0})
        elif self.rollout == "fail":
            condition = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            steps.append({"observedGeneration": generation, "conditions": [{**condition, "message": "ReplicaSet timed out"}]})
        else:
            done = {"observedGeneration": generation, "replicas": wanted, "updatedReplicas": wanted, "readyReplicas": wanted}
            steps.append({**done, "availableReplicas": wanted, "conditions": [{"type": "Available", "status": "True"}]})
        self._statuses[path] = steps


def write_kubeconfig(directory: Path, server: str, *, token: str = TOKEN, namespace: str = "default") -> Path:
    """Write a kubeconfig with one cluster at ``server`` and a bearer-token user; return its path."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "tester", "namespace": namespace}}],
        "current-context": "test",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path
