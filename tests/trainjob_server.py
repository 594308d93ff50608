"""A stand-in for a Kubernetes API server with Kubeflow Trainer installed, which *runs* each TrainJob's nodes here.

No Kubernetes can run in the test environment, so this speaks the documented REST contract of the custom
resource ``trainjobs.trainer.kubeflow.org`` (v1alpha1) in a namespace: ``POST`` on the collection creates one,
``GET`` reads it with its ``status`` (``conditions``, ``jobsStatus``), ``DELETE`` removes it. Like a real
server it checks the bearer token (401; 403 with the RBAC message for :data:`FORBIDDEN_TOKEN`), validates
the object against the CRD's OpenAPI schema vendored in ``tests/data`` (422 naming the field), refuses a
second object of the same name (409) and, as the Trainer's admission webhook does, a ``runtimeRef`` naming
a ClusterTrainingRuntime it does not hold. Errors are ``Status`` bodies.

Like the Trainer controller with the ``xgboost-distributed`` runtime, it then starts ``spec.trainer.numNodes``
processes running ``command`` + ``args`` with the trainer's ``env`` (``secretKeyRef`` values from
:attr:`FakeTrainerServer.secrets`), the image's ``PATH`` and the four variables the runtime injects:
``DMLC_TRACKER_URI`` (node 0's host: 127.0.0.1 here), ``DMLC_TRACKER_PORT``, ``DMLC_TASK_ID`` and
``DMLC_NUM_WORKER``. The TrainJob is ``Complete`` when every node exits 0 and ``Failed`` (reason
``FailedJobs``) when one does not; deleting it kills its nodes. It binds 127.0.0.1 only and stops every node
when the ``with`` block ends. :attr:`requests` records what was asked, :attr:`logs` each node's output.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import socket
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema

from ._fake_api import FakeJsonApi
from .k8s_server import FORBIDDEN_TOKEN, TOKEN, write_kubeconfig

SCHEMA = json.loads((Path(__file__).parent / "data" / "trainjob-v1alpha1.schema.json").read_text(encoding="utf-8"))
_PATH = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/(?P<ns>[a-z0-9-]+)/trainjobs(?:/(?P<name>[a-z0-9.-]+))?$")


def schema_errors(trainjob: dict[str, Any]) -> list[str]:
    """What is wrong with ``trainjob`` by the TrainJob CRD's OpenAPI schema: ``spec.trainer.numNodes: 'two' is not ...``."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(trainjob)]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeTrainerServer(FakeJsonApi):
    """The fake API server; use it as a context manager. ``url`` is its address."""

    def __init__(
        self, *, path: str, runtimes: tuple[str, ...] = ("xgboost-distributed",), secrets: dict[str, dict[str, str]] | None = None
    ):
        self.image_path = path
        self.runtimes = runtimes
        self.secrets = secrets or {}
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.logs: dict[str, list[str]] = {}
        self._nodes: dict[tuple[str, str], list[subprocess.Popen]] = {}
        self._lock = threading.Lock()
        super().__init__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        for key in list(self._nodes):
            self._kill(key)

    def write_kubeconfig(self, directory: Path, *, token: str = TOKEN) -> Path:
        return write_kubeconfig(directory, self.url, token=token)

    # ----------------------------------------------------------------- behaviour
    @staticmethod
    def _status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
        return code, {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, f"{path}?{urlencode(query)}" if query else path))
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        if token not in (TOKEN, FORBIDDEN_TOKEN):
            return self._status(401, "Unauthorized", "Unauthorized")
        match = _PATH.match(path)
        if not match:
            return self._status(404, "NotFound", "the server could not find the requested resource")
        namespace, name = match["ns"], match["name"]
        if token == FORBIDDEN_TOKEN:
            verb = {"POST": "create"}.get(method, method.lower())
            what = f'trainjobs.trainer.kubeflow.org "{name}"' if name else "trainjobs.trainer.kubeflow.org"
            message = f'{what} is forbidden: User "system:serviceaccount:{namespace}:default-editor" cannot {verb} resource "trainjobs"'
            return self._status(403, "Forbidden", f'{message} in API group "trainer.kubeflow.org" in the namespace "{namespace}"')
        if method == "POST" and not name:
            return self._create(namespace, json.loads(body or b"{}"))
        if method == "GET" and name:
            with self._lock:
                found = self.objects.get((namespace, name))
                return (200, copy.deepcopy(found)) if found else self._status(404, "NotFound", f'trainjobs "{name}" not found')
        if method == "DELETE" and name:
            with self._lock:
                found = self.objects.pop((namespace, name), None)
            if found is None:
                return self._status(404, "NotFound", f'trainjobs "{name}" not found')
            self._kill((namespace, name))
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": "trainjobs"}}
        return self._status(405, "MethodNotAllowed", f"{method} is not supported here")

    def _create(self, namespace: str, trainjob: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        errors = schema_errors(trainjob)
        if errors:
            return self._status(422, "Invalid", f"TrainJob.trainer.kubeflow.org is invalid: {'; '.join(errors)}")
        meta = trainjob["metadata"]
        if meta.get("namespace", namespace) != namespace:
            return self._status(400, "BadRequest", "the namespace of the object does not match the namespace of the request")
        runtime = trainjob["spec"]["runtimeRef"]["name"]
        if runtime not in self.runtimes:
            message = (
                'admission webhook "validator.trainjob.trainer.kubeflow.org" denied the request: '
                f'ClusterTrainingRuntime.trainer.kubeflow.org "{runtime}" not found'
            )
            return self._status(422, "Invalid", message)
        key = (namespace, meta["name"])
        with self._lock:
            if key in self.objects:
                return self._status(409, "AlreadyExists", f'trainjobs.trainer.kubeflow.org "{meta["name"]}" already exists')
            stored = {**copy.deepcopy(trainjob), "status": {"conditions": [], "jobsStatus": []}}
            stored["metadata"] = {**meta, "namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": _now()}
            self.objects[key] = stored
        threading.Thread(target=self._run, args=(key, stored), daemon=True, name=f"trainjob-{meta['name']}").start()
        return 201, copy.deepcopy(stored)

    # ----------------------------------------------------------------- the controller
    def _node_env(self, trainer: dict[str, Any], rank: int, nodes: int, port: int) -> dict[str, str]:
        env = {"PATH": self.image_path, "HOME": os.environ.get("HOME", "/tmp")}
        for item in trainer.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
        return {
            **env,
            "DMLC_TRACKER_URI": "127.0.0.1",
            "DMLC_TRACKER_PORT": str(port),
            "DMLC_TASK_ID": str(rank),
            "DMLC_NUM_WORKER": str(nodes),
        }

    def _set_status(self, key: tuple[str, str], **status: Any) -> None:
        with self._lock:
            if key in self.objects:
                self.objects[key]["status"].update(status)

    def _run(self, key: tuple[str, str], trainjob: dict[str, Any]) -> None:
        trainer = trainjob["spec"]["trainer"]
        nodes = int(trainer.get("numNodes", 1))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        command = [*trainer.get("command", []), *trainer.get("args", [])]
        processes = []
        for rank in range(nodes):
            process = subprocess.Popen(
                command, env=self._node_env(trainer, rank, nodes, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            processes.append(process)
        self._nodes[key] = processes
        self._set_status(key, jobsStatus=[{"name": "node", "active": nodes, "ready": nodes, "succeeded": 0, "failed": 0, "suspended": 0}])
        logs = self.logs.setdefault(key[1], [])
        readers = [threading.Thread(target=self._read, args=(rank, process, logs), daemon=True) for rank, process in enumerate(processes)]
        for reader in readers:
            reader.start()
        codes = [process.wait() for process in processes]
        for reader in readers:
            reader.join(timeout=10)
        succeeded, failed = sum(code == 0 for code in codes), sum(code != 0 for code in codes)
        jobs = [{"name": "node", "active": 0, "ready": 0, "succeeded": succeeded, "failed": failed, "suspended": 0}]
        if failed:
            rank = next(rank for rank, code in enumerate(codes) if code != 0)
            message = f"jobset failed due to job node-{rank} failing: BackoffLimitExceeded: node {rank} exited with code {codes[rank]}"
            condition = {"type": "Failed", "status": "True", "reason": "FailedJobs", "message": message, "lastTransitionTime": _now()}
        else:
            condition = {
                "type": "Complete",
                "status": "True",
                "reason": "JobsCompleted",
                "message": "jobset completed",
                "lastTransitionTime": _now(),
            }
        self._set_status(key, jobsStatus=jobs, conditions=[condition])

    @staticmethod
    def _read(rank: int, process: subprocess.Popen, logs: list[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            logs.append(f"node {rank}: {line.rstrip()}")
        process.stdout.close()

    def _kill(self, key: tuple[str, str]) -> None:
        for process in self._nodes.pop(key, []):
            if process.poll() is None:
                process.kill()
            process.wait()
