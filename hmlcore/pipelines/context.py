"""``OpContext``: what a running step may use besides its inputs (the lake, the warehouse, the models, the run id).

A step's function takes it by annotating a parameter with :class:`OpContext`; the step's CLI makes one
for each run (:mod:`hmlcore.cli.pipelines`), and its artifacts land in the lake under the run and step.

Example:
    >>> @hml.op()  # doctest: +SKIP
    ... def train(ctx: OpContext, table: str) -> dict:
    ...     return ctx.save_artifact("model.bin", fit(ctx.warehouse.query(table)))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hmlcore.errors import PipelineError
from hmlcore.model.lookup import find_model
from hmlcore.storage.lake import Lake, sha256_bytes

if TYPE_CHECKING:
    from hmlcore.model.container import ModelContainer
    from hmlcore.storage.store import DataStore
    from hmlcore.storage.warehouse import Warehouse

__all__ = ["OpContext"]


@dataclass
class OpContext:
    """What a running step may use besides its inputs.

    Attributes:
        store: the app's data (:class:`~hmlcore.storage.store.DataStore`): its lake and warehouse, opened on first use.
        models: the app's registered models by name.
        pipeline: the name of the pipeline the step runs in.
        step: the op's name.
        run_id: the pipeline run's id (the KFP job id in the cluster, the local run's id on a laptop).
    """

    store: DataStore
    models: Mapping[str, ModelContainer]
    pipeline: str
    step: str
    run_id: str

    @property
    def lake(self) -> Lake:
        """The app's lake."""
        return self.store.lake

    @property
    def warehouse(self) -> Warehouse:
        """The app's warehouse."""
        return self.store.warehouse

    def get_model(self, name: str) -> ModelContainer:
        """The registered :class:`~hmlcore.model.ModelContainer` called ``name``."""
        return find_model(self.models, name)

    def artifact_uri(self, name: str) -> str:
        """The full URL of ``name`` in this run's and step's lake folder, where :meth:`save_artifact` writes.

        For a file another library writes there itself, e.g. ``ctx.warehouse.export(table, ctx.artifact_uri("rows.parquet"))``.
        """
        return self.lake.uri("runs", self.pipeline, self.run_id, self.step, name)

    def save_artifact(self, name: str, data: bytes) -> dict[str, Any]:
        """Store ``data`` in the lake under this run and step; return ``{"uri", "sha256", "size"}``.

        Hand the returned dict to the next step, which reads it back with :meth:`load_artifact`.
        """
        uri = self.lake.write_bytes(self.artifact_uri(name), data)
        return {"uri": uri, "sha256": sha256_bytes(data), "size": len(data)}

    def load_artifact(self, artifact: dict[str, Any]) -> bytes:
        """Read an artifact saved by :meth:`save_artifact`, verifying its sha256.

        Raises:
            PipelineError: the artifact is missing or its digest differs.
        """
        try:
            uri, expected = artifact["uri"], artifact["sha256"]
        except (KeyError, TypeError):
            raise PipelineError(f"step {self.step}: {artifact!r} is not an artifact (it needs 'uri' and 'sha256')") from None
        try:
            data = self.lake.read_bytes(uri)
        except FileNotFoundError:
            raise PipelineError(f"step {self.step}: artifact {uri} does not exist") from None
        actual = sha256_bytes(data)
        if actual != expected:
            raise PipelineError(f"step {self.step}: artifact {uri} fails verification: sha256 {actual} != {expected}")
        return data
