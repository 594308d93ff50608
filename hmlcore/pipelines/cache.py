"""The step cache: a step whose inputs, code and settings have not changed reuses its recorded output.

A step's key is the sha256 of what decides its output:

- its input values exactly as its command line receives them (an upstream step's output is JSON naming
  its artifacts with their sha256, so a changed artifact changes the key);
- the content of every file a string input names (a path in the working folder or in the package);
- the code it runs: the source of hmlcore and of the step's own package (every ``.py`` file: a feature
  list changed in ``shared.py`` changes every step's key), the name and version of every installed
  distribution (the package's own, xgboost's...), and Python's version;
- the environment variables the compiled spec sets in the step's container (their names are listed in
  ``HML_CACHE_ENV``, which the compiler adds).

The cache lives in the lake (``cache/<pipeline>/<step>/<key>.json``), so the step's own command finds it
the same way on a laptop and in a Kubeflow pod: the key is computed by the same code in both places.
An entry is recorded only after the step succeeded and wrote its output; it lists every artifact the
output names with its sha256, and an entry whose artifact is missing or fails its digest is ignored
with a warning (the step runs again and records a fresh entry).

A step declared ``@hml.op(cache=False)`` is never cached: one with effects beyond its outputs
(publishing a model, writing tables) or that reads what the key cannot see (the registry's model in
service, a warehouse query). A string input that is a URL makes the step uncached too: the content
behind it is not the cache's to see; so does an input the step declares as a source
(``@hml.op(sources=[...])``) that names no file, i.e. a warehouse table or a query.
``HML_CACHE=false`` (``run-all --no-cache``) reruns steps and records
fresh entries.

Example:
    >>> key = step_key(pipeline="demo", op=train, raw={"n_estimators": "300"}, env={})  # doctest: +SKIP
    >>> StepCache(app.lake, "demo").lookup("train", key, warn=print)  # doctest: +SKIP
    Hit(run_id='local-20250101-120000-1a2b3c', output='{"uri": ...}')
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmlcore import _env
from hmlcore._files import write_atomic
from hmlcore._machine import installed_distributions
from hmlcore._version import __version__ as hmlcore_version
from hmlcore.errors import HmlError
from hmlcore.storage.lake import sha256_bytes
from hmlcore.storage.sources import local_file

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline
    from hmlcore.pipelines.ops import HmlOp
    from hmlcore.storage.lake import Lake

__all__ = [
    "CACHE_ENV",
    "KEY_ENV",
    "Hit",
    "StepCache",
    "StepKey",
    "cache_enabled",
    "code_digest",
    "command_inputs",
    "compiled_spec",
    "lookup_command",
    "step_key",
]

#: ``false`` (or ``0``, ``no``, ``off``): run the step even if the cache holds its output (a fresh entry is still recorded)
CACHE_ENV = _env.CACHE.name
#: the names, comma-separated, of the environment variables the compiled spec sets for the step: their values are part of its key
KEY_ENV = _env.CACHE_KEYED.name
#: bumped when the layout of a key or an entry changes, so older entries are never read as newer ones
FORMAT = 1


@dataclass(frozen=True)
class StepKey:
    """A step's cache key; ``digest`` is ``None`` when the step is not cached, and ``reason`` says why."""

    digest: str | None
    reason: str = ""


@dataclass(frozen=True)
class Hit:
    """A usable cache entry: the run that recorded it, and the step's output text (``None``: the step returns nothing)."""

    run_id: str
    output: str | None


def cache_enabled(environ: Mapping[str, str]) -> bool:
    """Whether ``HML_CACHE`` in ``environ`` lets a step reuse a recorded output (default: yes).

    Raises:
        ConfigError: the value is not a boolean.
    """
    return _env.CACHE.get(environ)


def code_digest(module: str) -> str:
    """The sha256 of the code a step of ``module`` runs: hmlcore's and the module's package's source, the libraries.

    Every ``.py`` file of both packages counts (a step's module reads the package's shared settings),
    with the name and version of every installed distribution (a library upgraded, or the package
    reinstalled at another version, changes it) and Python's version. Computed once per process.
    """
    return _code_digest(module.partition(".")[0])


@functools.cache
def _code_digest(package: str) -> str:
    digest = hashlib.sha256(f"format {FORMAT}; python {sys.version}; hmlcore {hmlcore_version}".encode())
    for name in dict.fromkeys(("hmlcore", package)):
        for path, data in _sources(name):
            digest.update(f"\n{name}/{path} {len(data)}\n".encode())
            digest.update(data)
    for installed in installed_distributions():
        digest.update(f"\n{installed}".encode())
    return digest.hexdigest()


def _sources(package: str) -> Iterator[tuple[str, bytes]]:
    """Each ``.py`` file of ``package`` (its path inside the package, its bytes), in a stable order."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return
    if spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            root = Path(folder)
            for path in sorted(root.rglob("*.py")):
                yield path.relative_to(root).as_posix(), path.read_bytes()
    elif spec.origin and os.path.isfile(spec.origin):
        yield os.path.basename(spec.origin), Path(spec.origin).read_bytes()


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def step_key(*, pipeline: str, op: HmlOp, raw: Mapping[str, str], env: Mapping[str, str]) -> StepKey:
    """The cache key of running ``op`` with the command-line values ``raw`` (``{param: text}``) and environment ``env``.

    Args:
        pipeline: the pipeline the step belongs to.
        op: the step.
        raw: each given input's text, as the command line carries it (``--hml-*`` options excluded).
        env: the step's environment (``os.environ`` in the step's process): the variables ``HML_CACHE_ENV`` names count.
    """
    if not op.cache:
        return StepKey(None, f"step {op.name} is declared with cache=False")
    package = op.func.__module__.partition(".")[0]
    files: dict[str, str] = {}
    for param in op.params:
        value = raw.get(param.name)
        if param.type is not str or value is None:
            continue
        if "://" in value:
            return StepKey(None, f"input {param.name} is the URL {value}, whose content the cache cannot see")
        path = local_file(value, package=package)  # found as the step's own read_rows finds it
        if path is not None:
            files[param.name] = _file_sha256(path)
        elif param.name in op.sources:
            return StepKey(None, f"input {param.name} names {value!r}, a table or query whose rows the cache cannot see")
    names = sorted(n for n in _env.CACHE_KEYED.get(env).split(",") if n and n not in (KEY_ENV, CACHE_ENV))
    described = {
        "format": FORMAT,
        "pipeline": pipeline,
        "step": op.name,
        "code": code_digest(op.func.__module__),
        "inputs": dict(sorted(raw.items())),
        "files": files,
        "env": {name: env.get(name) for name in names},
    }
    return StepKey(hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest())


def command_inputs(op: HmlOp, command: Sequence[str]) -> dict[str, str]:
    """The input values a step's resolved command line passes (``{param: text}``), ``--hml-*`` options left out.

    Example:
        >>> command = ["crashed", "pipelines", "p", "run", "train", "--n-estimators", "30", "--hml-run-id", "r1"]
        >>> command_inputs(train, command)  # doctest: +SKIP
        {'n_estimators': '30'}
    """
    by_option = {p.option: p.name for p in op.params}
    values: dict[str, str] = {}
    arguments = list(command)
    index = arguments.index(op.name) + 1 if op.name in arguments else len(arguments)
    while index < len(arguments) - 1:
        option, value = arguments[index], arguments[index + 1]
        if option in by_option:
            values[by_option[option]] = value
        index += 2
    return values


class StepCache:
    """The cache entries of one pipeline's steps, in the lake under ``cache/<pipeline>/``."""

    def __init__(self, lake: Lake, pipeline: str) -> None:
        self.lake = lake
        self.pipeline = pipeline

    def entry_uri(self, step: str, key: StepKey) -> str:
        """Where the entry of ``step`` under ``key`` is kept."""
        return self.lake.uri("cache", self.pipeline, step, f"{key.digest}.json")

    def lookup(self, step: str, key: StepKey, *, warn: Callable[[str], None]) -> Hit | None:
        """The recorded output of ``step`` under ``key``, if every artifact it names is still there, unchanged.

        An entry whose artifact is missing or fails its sha256 is ignored; ``warn`` is told which and why.
        """
        if key.digest is None:
            return None
        uri = self.entry_uri(step, key)
        try:
            entry = json.loads(self.lake.read_bytes(uri))
            run_id, output, artifacts = str(entry["run_id"]), entry["output"], dict(entry["artifacts"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, HmlError) as exc:
            warn(f"{step}: cache entry {uri} ignored: it cannot be read ({type(exc).__name__}: {exc})")
            return None
        for artifact, expected in artifacts.items():
            try:
                actual = sha256_bytes(self.lake.read_bytes(artifact))
            except FileNotFoundError:
                warn(f"{step}: cache entry from run {run_id} ignored: its artifact {artifact} is missing; running the step")
                return None
            except (OSError, HmlError) as exc:
                warn(f"{step}: cache entry from run {run_id} ignored: its artifact {artifact} cannot be read ({exc}); running the step")
                return None
            if actual != expected:
                warn(
                    f"{step}: cache entry from run {run_id} ignored: its artifact {artifact} fails its digest"
                    f" (sha256 {actual[:12]}... != {str(expected)[:12]}...); running the step"
                )
                return None
        return Hit(run_id=run_id, output=None if output is None else str(output))

    def record(self, step: str, key: StepKey, *, run_id: str, output: str | None) -> None:
        """Keep ``output`` (the succeeded step's output text) under ``key``, with the sha256 of every artifact it names.

        Raises:
            StorageError: the lake cannot be written.
        """
        if key.digest is None:
            return
        artifacts = dict(self._artifacts(output))
        entry = {"format": FORMAT, "step": step, "run_id": run_id, "output": output, "artifacts": artifacts}
        self.lake.write_bytes(self.entry_uri(step, key), json.dumps(entry, indent=1, sort_keys=True).encode())

    def _artifacts(self, output: str | None) -> Iterator[tuple[str, str]]:
        """Each lake file ``output`` names, with its sha256: the one recorded beside it, else that of its bytes now."""
        if output is None:
            return
        try:
            value: Any = json.loads(output)
        except ValueError:
            value = output
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                if isinstance(item.get("uri"), str) and isinstance(item.get("sha256"), str):
                    yield item["uri"], item["sha256"]
                    stack += [v for k, v in item.items() if k not in ("uri", "sha256")]
                else:
                    stack += list(item.values())
            elif isinstance(item, list):
                stack += item
            elif isinstance(item, str) and self.lake.owns(item) and self.lake.contains(item) and self.lake.exists(item):
                yield item, sha256_bytes(self.lake.read_bytes(item))


def lookup_command(pipeline: HmlPipeline, command: Sequence[str], env: Mapping[str, str], *, warn: Callable[[str], None]) -> Hit | None:
    """The usable cache entry for a step's resolved command line run with ``env`` (how ``run-all`` asks before running it)."""
    try:
        op = pipeline.get_op(command[4])
    except (IndexError, HmlError):
        return None
    key = step_key(pipeline=pipeline.name, op=op, raw=command_inputs(op, command), env=env)
    return StepCache(pipeline.owner.store.lake, pipeline.name).lookup(op.name, key, warn=warn)


# ------------------------------------------------------------------ the compiled spec run-all walks
def compiled_spec(
    key: Callable[[], str | None],
    *,
    folder: str,
    compile_spec: Callable[[], dict[str, Any]],
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """The pipeline's compiled spec: the one kept under the same key, else a fresh one (kept for the next run).

    ``key`` computes the digest of what the spec is made from without compiling
    (:func:`hmlcore.pipelines.dry_run.spec_key`); ``None`` means it cannot be told, and the pipeline is
    compiled every time. A fresh spec is kept only if ``key`` gives the same digest again after the
    compile (a pipeline or configurator whose calls change from one call to the next is never reused).
    An entry is written atomically and carries its key and the sha256 of its spec; one that cannot be
    read, or whose key or digest does not match, is reported through ``warn`` and compiled again.
    A folder that cannot be written only costs the next run a compile.
    """
    digest = key()
    if digest is None:
        return compile_spec()
    path = os.path.join(folder, f"{digest}.json")
    try:
        with open(path, "rb") as handle:
            entry = json.loads(handle.read())
        spec = entry["spec"]
        if entry.get("format") != FORMAT or entry.get("key") != digest or entry.get("sha256") != _spec_digest(spec):
            raise ValueError("its key or its digest does not match its content")
        return dict(spec)
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warn(f"kept compiled spec {path} ignored: it cannot be read ({type(exc).__name__}: {exc}); compiling again")
    spec = compile_spec()
    if key() == digest:
        entry = {"format": FORMAT, "key": digest, "sha256": _spec_digest(spec), "spec": spec}
        try:
            os.makedirs(folder, exist_ok=True)
            write_atomic(path, json.dumps(entry))
        except OSError:  # a spec that cannot be kept is compiled again next time
            pass
    return spec


def _spec_digest(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
