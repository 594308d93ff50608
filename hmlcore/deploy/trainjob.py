"""A training step's workers as a Kubeflow Trainer TrainJob on the ``xgboost-distributed`` runtime.

``compile`` tells a step that takes ``workers`` what its TrainJob looks like (:data:`~hmlcore._env.TRAINJOB`:
the package's image, the namespace, the step's own environment, secret references included, and its
resources); in the cluster the step then submits the TrainJob (:func:`trainjob_manifest`), follows its state
into the step's log, fails with the TrainJob's own reason, and deletes it when it is done or the step is
cancelled (:class:`TrainJobRun`); a failed one is kept for its pods' logs. The runtime injects ``DMLC_TRACKER_URI``, ``DMLC_TRACKER_PORT``,
``DMLC_TASK_ID`` and ``DMLC_NUM_WORKER`` into each node; the nodes run :mod:`hmlcore.model.worker`.

The step's service account needs the right to create, read and delete TrainJobs in its namespace:
:func:`rbac_manifests` (``<package> pipelines <pipeline> trainjob-rbac``) writes that Role and RoleBinding.

Example:
    >>> spec = {"image": "crashed:1", "namespace": "team", "env": [], "resources": {"requests": {"memory": "1Gi"}}}
    >>> manifest = trainjob_manifest("hml-train-1a2b3c", spec, command=["python", "-m", "hmlcore.model.worker"], args=["{}"], workers=3)
    >>> manifest["spec"]["runtimeRef"]["name"], manifest["spec"]["trainer"]["numNodes"]
    ('xgboost-distributed', 3)
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from hmlcore.deploy.k8s_apply import KubeApiError, KubeClient
from hmlcore.model.distributed import TrainingError

__all__ = ["API_VERSION", "RUNTIME", "TrainJobRun", "rbac_manifests", "trainjob_manifest", "trainjob_name"]

API_VERSION = "trainer.kubeflow.org/v1alpha1"
#: Kubeflow Trainer's built-in runtime for XGBoost's collective (a ClusterTrainingRuntime)
RUNTIME = "xgboost-distributed"
#: the service account Kubeflow Pipelines runs steps as in a multi-user install's profile namespace
DEFAULT_SERVICE_ACCOUNT = "default-editor"
_GROUP = API_VERSION.split("/")[0]


def trainjob_name(step: str) -> str:
    """A fresh TrainJob name for ``step``: ``hml-<step>-<random>``, short enough for the JobSet's pods and Service.

    Example:
        >>> trainjob_name("train_model").startswith("hml-train-model-")
        True
    """
    stem = "".join(c if c.isalnum() else "-" for c in step.lower()).strip("-")[:20].rstrip("-")
    return f"hml-{stem}-{uuid.uuid4().hex[:8]}"


def trainjob_manifest(
    name: str,
    spec: Mapping[str, Any],
    *,
    command: Sequence[str],
    args: Sequence[str],
    workers: int,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The TrainJob running ``command`` + ``args`` on ``workers`` nodes of :data:`RUNTIME` as ``spec`` (from ``compile``) says.

    Args:
        spec: ``{"image", "namespace", "env": [EnvVar...], "resources": {"requests": {...}, "limits": {...}}}``.
    """
    trainer: dict[str, Any] = {"image": spec["image"], "command": list(command), "args": list(args), "numNodes": int(workers)}
    if spec.get("env"):
        trainer["env"] = [dict(e) for e in spec["env"]]
    resources = {kind: dict(values) for kind, values in (spec.get("resources") or {}).items() if values}
    if resources:
        trainer["resourcesPerNode"] = resources
    return {
        "apiVersion": API_VERSION,
        "kind": "TrainJob",
        "metadata": {
            "name": name,
            "namespace": spec["namespace"],
            "labels": {"app.kubernetes.io/managed-by": "hmlcore", **dict(labels or {})},
        },
        "spec": {"runtimeRef": {"apiGroup": _GROUP, "kind": "ClusterTrainingRuntime", "name": RUNTIME}, "trainer": trainer},
    }


def rbac_manifests(namespace: str, *, service_account: str = DEFAULT_SERVICE_ACCOUNT) -> list[dict[str, Any]]:
    """The Role letting ``service_account`` create, follow and delete TrainJobs in ``namespace``, and its RoleBinding."""
    name = "hml-trainjobs"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [_GROUP], "resources": ["trainjobs"], "verbs": ["create", "get", "list", "watch", "delete"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
    return [role, binding]


class TrainJobRun:
    """Submit one TrainJob, follow it to its end, and delete it.

    Args:
        client: the Kubernetes API (:meth:`KubeClient.from_config`: the pod's own service account in a step).
        echo: where state changes go (the step's log).
        poll: seconds between two reads of the TrainJob's status.
    """

    def __init__(self, client: KubeClient, *, echo: Callable[[str], None], poll: float = 2.0) -> None:
        self.client = client
        self.echo = echo
        self.poll = poll

    @staticmethod
    def _path(namespace: str, name: str | None = None) -> str:
        path = f"/apis/{API_VERSION}/namespaces/{namespace}/trainjobs"
        return f"{path}/{name}" if name else path

    def run(self, manifest: Mapping[str, Any], *, timeout: float | None = None) -> None:
        """Create the TrainJob, wait for its ``Complete`` condition, delete it (also when the step is cancelled; not when it failed).

        Raises:
            TrainingError: the TrainJob could not be created (no right to, Kubeflow Trainer or the runtime
                missing: the message says which), it failed (with its reason and message), or ``timeout`` passed.
        """
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        self._create(manifest)
        self.echo(f"trainjob {name}: created in namespace {namespace} ({manifest['spec']['trainer']['numNodes']} nodes of {RUNTIME})")
        try:
            with _cancel_on_sigterm():
                self._wait(namespace, name, timeout=timeout)
        except _Failed as failed:  # kept: its pods' logs say why
            logs = f"kubectl -n {namespace} logs -l jobset.sigs.k8s.io/jobset-name={name}"
            raise TrainingError(f"{failed} (kept for its logs: {logs}; then kubectl -n {namespace} delete trainjob {name})") from None
        except BaseException:  # the step was cancelled or gave up waiting: the TrainJob goes too
            self._delete(namespace, name, reason="stopped")
            raise
        self._delete(namespace, name, reason="done")

    def _create(self, manifest: Mapping[str, Any]) -> None:
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            self.client.request("POST", self._path(namespace), body=dict(manifest), content_type="application/json")
        except KubeApiError as exc:
            raise TrainingError(_why_not_created(exc, namespace, name)) from None

    def _wait(self, namespace: str, name: str, *, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        said = ""
        while True:
            current = self.client.request("GET", self._path(namespace, name))
            if current is None:
                raise TrainingError(f"trainjob {name} disappeared from namespace {namespace} before it completed")
            state, done, failure = describe(current)
            if state != said:
                self.echo(f"trainjob {name}: {state}")
                said = state
            if failure:
                raise _Failed(f"trainjob {name} failed: {failure}")
            if done:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TrainingError(f"trainjob {name} did not complete in {timeout:.0f}s; last state: {state}")
            time.sleep(self.poll)

    def _delete(self, namespace: str, name: str, *, reason: str) -> None:
        try:
            self.client.request("DELETE", self._path(namespace, name), query=[("propagationPolicy", "Foreground")])
            self.echo(f"trainjob {name}: deleted ({reason})")
        except KubeApiError as exc:
            self.echo(f"trainjob {name}: could not delete it ({exc}); delete it with kubectl -n {namespace} delete trainjob {name}")


class _Failed(TrainingError):
    """The TrainJob reported a ``Failed`` condition."""


def describe(trainjob: Mapping[str, Any]) -> tuple[str, bool, str]:
    """The TrainJob's state in words, whether it completed, and its failure (reason: message) or ``""``.

    Example:
        >>> failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "too slow"}
        >>> describe({"status": {"conditions": [failed]}})
        ('failed', False, 'DeadlineExceeded: too slow')
    """
    status = trainjob.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Failed" in conditions:
        found = conditions["Failed"]
        return "failed", False, f"{found.get('reason') or 'Failed'}: {found.get('message') or 'no message'}"
    if "Complete" in conditions:
        return "complete", True, ""
    if "Suspended" in conditions:
        return "suspended", False, ""
    jobs = status.get("jobsStatus") or []
    counts = {key: sum(int(job.get(key) or 0) for job in jobs) for key in ("active", "ready", "succeeded", "failed")}
    if not jobs:
        return "waiting for its nodes to be scheduled", False, ""
    return ", ".join(f"{count} {key}" for key, count in counts.items() if count) or "starting", False, ""


def _why_not_created(exc: KubeApiError, namespace: str, name: str) -> str:
    if exc.status == 403:
        return (
            f"the step's service account may not create trainjobs ({_GROUP}) in namespace {namespace}: "
            "apply the Role and RoleBinding that `<package> pipelines <pipeline> trainjob-rbac` prints"
        )
    if exc.status == 404:
        return f"the cluster has no TrainJob API ({API_VERSION} trainjobs): install Kubeflow Trainer (with its runtimes) first"
    if RUNTIME in exc.message and "not found" in exc.message:
        return f"the ClusterTrainingRuntime {RUNTIME} is not in the cluster: install Kubeflow Trainer's runtimes ({exc.message})"
    return f"cannot create trainjob {name} in namespace {namespace}: {exc.message}"


@contextlib.contextmanager
def _cancel_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM (Kubeflow cancelling the run stops the step's pod with it) into KeyboardInterrupt for the block."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
