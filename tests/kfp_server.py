"""A fake Kubeflow Pipelines API server for the deploy tests, on 127.0.0.1 only.

No real KFP API server can run in the test environment, so this one implements the v2beta1 REST paths
that ``kfp.Client`` calls when deploying (``/apis/v2beta1/healthz``, ``pipelines/upload``,
``pipelines/upload_version``, ``pipelines`` and their ``versions``, ``experiments``, ``runs``,
``recurringruns``) and keeps what it is sent in memory. JSON request bodies are validated against the
``kfp_server_api`` models (unknown fields, wrong types and enum values are a 400, as grpc-gateway answers);
uploaded pipeline files are reloaded with kfp's own component loader; runs must reference an existing
experiment and pipeline version and pass only parameters the pipeline declares. It answers 401 without
the expected bearer token, and ``fail`` makes a given method and path prefix answer a chosen status once.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import re
import threading
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import kfp_server_api

from ._fake_api import FakeJsonApi

__all__ = ["FakeKfp"]

PREFIX = "/apis/v2beta1"
# protobuf's JSON mapping sends int64 as a string or a number; the models type those fields "str"
_PRIMITIVES = {"str": (str, int), "int": int, "bool": bool, "float": (int, float), "object": object, "datetime": str}


class BadRequest(Exception):
    """A request the real server would refuse with 400."""


def validate(model: str, data: Any, where: str = "body") -> Any:
    """Check ``data`` against the kfp_server_api model ``model`` and return the model instance."""
    if model in _PRIMITIVES:
        if not isinstance(data, _PRIMITIVES[model]) or (model == "int" and isinstance(data, bool)):
            raise BadRequest(f"{where}: expected {model}, got {type(data).__name__}")
        return data
    match = re.fullmatch(r"list\[(.+)\]", model)
    if match:
        if not isinstance(data, list):
            raise BadRequest(f"{where}: expected a list")
        return [validate(match.group(1), item, f"{where}[{i}]") for i, item in enumerate(data)]
    match = re.fullmatch(r"dict\(str, (.+)\)", model)
    if match:
        if not isinstance(data, dict):
            raise BadRequest(f"{where}: expected an object")
        return {k: validate(match.group(1), v, f"{where}.{k}") for k, v in data.items()}
    cls = getattr(kfp_server_api, model)
    if hasattr(cls, "allowable_values"):
        if data not in cls.allowable_values:
            raise BadRequest(f"{where}: {data!r} is not one of {cls.allowable_values}")
        return data
    if not isinstance(data, dict):
        raise BadRequest(f"{where}: expected a {model} object")
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    kwargs = {}
    for key, value in data.items():
        if key not in by_json:
            raise BadRequest(f"{where}: unknown field {key!r} for {model}")
        attr = by_json[key]
        kwargs[attr] = None if value is None else validate(cls.openapi_types[attr], value, f"{where}.{key}")
    return cls(**kwargs)


def _to_json(model: Any) -> Any:
    return kfp_server_api.ApiClient().sanitize_for_serialization(model)


class FakeKfp(FakeJsonApi):
    """The fake server. Use as a context manager; ``url`` is its address.

    Attributes:
        pipelines, versions, experiments, runs, recurring_runs: what it holds, by id.
        requests: ``(method, path)`` of every request, in order.
    """

    def __init__(self, *, token: str | None = None, tag_name: str = "2.17.0", multi_user: bool = False) -> None:
        super().__init__()
        self.token = token
        self.tag_name = tag_name
        self.multi_user = multi_user
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self._failures: list[tuple[str, str, int]] = []
        self._clock = itertools.count()
        self._lock = threading.Lock()

    def fail(self, method: str, path_prefix: str, status: int) -> None:
        """Answer the next ``method`` request whose path starts with ``/apis/v2beta1`` + ``path_prefix`` with ``status``."""
        self._failures.append((method, PREFIX + path_prefix, status))

    def versions_of(self, pipeline_id: str) -> list[dict]:
        return [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]

    # ------------------------------------------------------------------ plumbing
    def _now(self) -> str:
        start = _dt.datetime(2025, 1, 1, tzinfo=_dt.UTC)
        return (start + _dt.timedelta(seconds=next(self._clock))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path))
            if self.token and headers.get("Authorization") != f"Bearer {self.token}":
                return 401, {"code": 16, "message": "Unauthenticated: no valid bearer token"}
            for i, (m, prefix, status) in enumerate(self._failures):
                if m == method and path.startswith(prefix):
                    del self._failures[i]
                    return status, {"code": 13, "message": f"injected failure {status} for {path}"}
            try:
                return self._route(method, path, query, body, headers.get("Content-Type", ""))
            except BadRequest as exc:
                return 400, {"code": 3, "message": str(exc)}
            except KeyError as exc:
                return 404, {"code": 5, "message": f"not found: {exc}"}

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes, content_type: str) -> tuple[int, Any]:
        if not path.startswith(PREFIX):
            raise KeyError(path)
        parts = path[len(PREFIX) :].strip("/").split("/")
        if parts == ["healthz"] and method == "GET":
            # the backend's own healthz handler answers its release (TAG_NAME) besides the model's fields
            return 200, {"commit_sha": "fake", "tag_name": self.tag_name, "multi_user": self.multi_user, "pipeline_store": "database"}
        if parts[0] == "pipelines":
            return self._pipelines(method, parts[1:], query, raw, content_type)
        if parts[0] == "experiments":
            return self._experiments(method, parts[1:], query, raw)
        if parts[0] == "runs" and method == "POST" and len(parts) == 1:
            return self._create_run(raw)
        if parts[0] == "recurringruns":
            return self._recurring(method, parts[1:], query, raw)
        raise KeyError(path)

    @staticmethod
    def _filtered(items: list[dict], query: dict[str, str]) -> list[dict]:
        if "filter" in query:
            for predicate in json.loads(query["filter"]).get("predicates", []):
                if predicate.get("operation") not in ("EQUALS", 1):
                    raise BadRequest(f"unsupported filter operation {predicate.get('operation')}")
                items = [i for i in items if i.get(predicate["key"]) == predicate.get("stringValue")]
        sort = query.get("sort_by", "")
        if sort:
            key, _, order = sort.partition(" ")
            items = sorted(items, key=lambda i: i.get(key) or "", reverse=order == "desc")
        size = int(query.get("page_size") or 0)
        return items[:size] if size else items

    def _upload_file(self, raw: bytes, content_type: str) -> dict:
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        files = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "uploadfile"]
        if not files:
            raise BadRequest("no uploadfile in the multipart body")
        text = files[0].get_payload(decode=True).decode()
        from kfp import components

        try:
            component = components.load_component_from_text(text)
        except Exception as exc:  # noqa: BLE001 - any loader failure is a bad upload
            raise BadRequest(f"the uploaded file is not a pipeline spec: {exc}") from None
        if not component.pipeline_spec.root.dag.tasks:
            raise BadRequest("the uploaded pipeline has no tasks")
        return _yaml_documents(text)[0]

    def _new_version(self, pipeline_id: str, name: str, description: str | None, spec: dict) -> dict:
        if any(v["display_name"] == name for v in self.versions_of(pipeline_id)):
            raise _Conflict(f"pipeline version {name!r} already exists")
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": uuid.uuid4().hex,
            "display_name": name,
            "description": description or "",
            "created_at": self._now(),
            "pipeline_spec": spec,
        }
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _pipelines(self, method: str, rest: list[str], query: dict[str, str], raw: bytes, content_type: str) -> tuple[int, Any]:
        try:
            if rest == ["upload"] and method == "POST":
                name = query.get("name") or query.get("display_name")
                if not name:
                    raise BadRequest("upload needs a name")
                if any(p["display_name"] == name for p in self.pipelines.values()):
                    raise _Conflict(f"pipeline {name!r} already exists")
                spec = self._upload_file(raw, content_type)
                pipeline = {"pipeline_id": uuid.uuid4().hex, "display_name": name, "description": query.get("description", "")}
                pipeline["created_at"] = self._now()
                self.pipelines[pipeline["pipeline_id"]] = pipeline
                self._new_version(pipeline["pipeline_id"], name, query.get("description"), spec)
                return 200, _to_json(validate("V2beta1Pipeline", pipeline))
            if rest == ["upload_version"] and method == "POST":
                pipeline_id = query.get("pipelineid", "")
                if pipeline_id not in self.pipelines:
                    raise KeyError(f"pipeline {pipeline_id}")
                if not query.get("name"):
                    raise BadRequest("upload_version needs a name")
                spec = self._upload_file(raw, content_type)
                version = self._new_version(pipeline_id, query["name"], query.get("description"), spec)
                return 200, _to_json(validate("V2beta1PipelineVersion", version))
        except _Conflict as exc:
            return 409, {"code": 6, "message": str(exc)}
        if not rest and method == "POST":
            body = json.loads(raw or b"{}")
            validate("V2beta1Pipeline", body)
            if not body.get("display_name"):
                raise BadRequest("a pipeline needs a display_name")
            if any(p["display_name"] == body["display_name"] for p in self.pipelines.values()):
                return 409, {"code": 6, "message": f"pipeline {body['display_name']!r} already exists"}
            pipeline = {**body, "pipeline_id": uuid.uuid4().hex, "created_at": self._now()}
            self.pipelines[pipeline["pipeline_id"]] = pipeline
            return 200, pipeline
        if not rest and method == "GET":
            found = self._filtered(list(self.pipelines.values()), query)
            return 200, {"pipelines": found, "total_size": len(found)}
        pipeline_id = rest[0]
        if len(rest) == 1 and method == "DELETE":
            if self.versions_of(pipeline_id) and query.get("cascade") != "true":
                return 400, {"code": 9, "message": f"pipeline {pipeline_id} still has versions"}
            del self.pipelines[pipeline_id]
            return 200, {}
        if len(rest) == 2 and rest[1] == "versions" and method == "GET":
            if pipeline_id not in self.pipelines:
                raise KeyError(f"pipeline {pipeline_id}")
            found = self._filtered(self.versions_of(pipeline_id), query)
            return 200, {"pipeline_versions": found, "total_size": len(found)}
        if len(rest) == 3 and rest[1] == "versions" and method == "DELETE":
            if self.versions[rest[2]]["pipeline_id"] != pipeline_id:
                raise KeyError(rest[2])
            del self.versions[rest[2]]
            return 200, {}
        raise KeyError("/".join(rest))

    def _experiments(self, method: str, rest: list[str], query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if rest or method not in ("GET", "POST"):
            raise KeyError("/".join(rest))
        if method == "GET":
            found = self._filtered(list(self.experiments.values()), query)
            if query.get("namespace"):
                found = [e for e in found if e.get("namespace") == query["namespace"]]
            return 200, {"experiments": found, "total_size": len(found)}
        body = json.loads(raw or b"{}")
        validate("V2beta1Experiment", body)
        if not body.get("display_name"):
            raise BadRequest("an experiment needs a display_name")
        if self.multi_user and not body.get("namespace"):
            raise BadRequest("Invalid input error: An experiment cannot have an empty namespace in multi-user mode")
        if any(
            e["display_name"] == body["display_name"] and e.get("namespace") == body.get("namespace") for e in self.experiments.values()
        ):
            return 409, {"code": 6, "message": f"experiment {body['display_name']!r} already exists"}
        experiment = {**body, "experiment_id": uuid.uuid4().hex, "created_at": self._now(), "storage_state": "AVAILABLE"}
        self.experiments[experiment["experiment_id"]] = experiment
        return 200, experiment

    def _check_reference(self, body: dict) -> dict:
        if body.get("experiment_id") not in self.experiments:
            raise BadRequest(f"experiment {body.get('experiment_id')!r} does not exist")
        reference = body.get("pipeline_version_reference") or {}
        version = self.versions.get(reference.get("pipeline_version_id", ""))
        if version is None or version["pipeline_id"] != reference.get("pipeline_id"):
            raise BadRequest(f"pipeline version reference {reference} does not exist")
        declared = version["pipeline_spec"]["root"].get("inputDefinitions", {}).get("parameters", {})
        given = (body.get("runtime_config") or {}).get("parameters") or {}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise BadRequest(f"the pipeline has no parameter {unknown[0]!r}")
        return version

    def _create_run(self, raw: bytes) -> tuple[int, Any]:
        body = json.loads(raw or b"{}")
        validate("V2beta1Run", body)
        self._check_reference(body)
        run = {**body, "run_id": uuid.uuid4().hex, "state": "PENDING", "created_at": self._now()}
        self.runs[run["run_id"]] = run
        return 200, run

    def _recurring(self, method: str, rest: list[str], query: dict[str, str], raw: bytes) -> tuple[int, Any]:
        if not rest and method == "GET":
            items = [r for r in self.recurring_runs.values() if r["experiment_id"] == query.get("experiment_id", r["experiment_id"])]
            found = self._filtered(items, query)
            return 200, {"recurringRuns": found, "total_size": len(found)}
        if not rest and method == "POST":
            body = json.loads(raw or b"{}")
            validate("V2beta1RecurringRun", body)
            self._check_reference(body)
            cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron", "")
            if len(cron.split()) != 6:
                raise BadRequest(f"cron {cron!r} must have 6 fields (seconds first)")
            if not 1 <= int(body.get("max_concurrency") or 0) <= 10:
                raise BadRequest("max_concurrency must be from 1 to 10")
            job = {**body, "recurring_run_id": uuid.uuid4().hex, "status": "ENABLED", "created_at": self._now()}
            self.recurring_runs[job["recurring_run_id"]] = job
            return 200, job
        if len(rest) == 1 and method == "DELETE":
            del self.recurring_runs[rest[0]]
            return 200, {}
        raise KeyError("/".join(rest))


class _Conflict(Exception):
    pass


def _yaml_documents(text: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d]
