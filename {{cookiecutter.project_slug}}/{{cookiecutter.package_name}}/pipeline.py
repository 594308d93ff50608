"""The pipelines' steps. Training: extract -> analyze -> build matrix -> train -> evaluate -> publish;
batch scoring: plan -> score each shard -> write the predictions.

Each ``@hml.op()`` runs as its own container in Kubeflow and as ``{{ cookiecutter.package_name }} pipelines
{{ cookiecutter.pipeline_name }} run <step>`` on a laptop. Steps hand each other small values (table
names, artifact URIs, metrics); the data itself stays in the warehouse and the lake: ``extract`` marks
each row for training or validation (``shared.SPLIT``), loads the rows into the warehouse, splits them
with SQL (the same SQL on DuckDB and BigQuery) and exports each split to the lake as Parquet, where the
later steps read it.

A run reuses a step's recorded output when its inputs, the package's code and its settings are unchanged
(``run-all`` prints it as cached; ``--no-cache`` runs it anyway): after changing only ``n_estimators``,
extract, analyze and build the matrix are not run again. Steps with effects beyond their output, or that
read what their inputs do not name, are declared ``@hml.op(cache=False)`` and run every time.

pandas, numpy and urllib.request are imported inside the functions that use them: ``{{ cookiecutter.package_name }}
--help`` and the inference server import this module too (to declare the pipeline) and start faster without them.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import sys
import urllib.parse
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any

from hmlcore import hml
from hmlcore.model import scoring
from hmlcore.model.split import ROW_ID, SplitSpec, row_ids, validation_mask, values_ids
from hmlcore.serving import report

from {{ cookiecutter.package_name }} import inference, shared

if TYPE_CHECKING:
    import pandas as pd
    from hmlcore.storage import Warehouse

TRAINING_TABLE = f"{shared.MODEL_NAME}_training"
VALIDATION_TABLE = f"{shared.MODEL_NAME}_validation"
#: the column ``extract`` adds to every row: True for a validation row (ROW_ID, the other column it adds, is
#: each row's identity: the registry keeps those a model trained on, so no later model is judged on them)
VALIDATION = "_validation"

#: how a file is read, by its name's ending: the pandas reader and its options; a further .gz, .bz2 or
#: .xz ending is decompressed first
READERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("read_csv", {}),
    ".tsv": ("read_csv", {"sep": "\t"}),
    ".parquet": ("read_parquet", {}),
    ".pq": ("read_parquet", {}),
    ".json": ("read_json", {}),
    ".jsonl": ("read_json", {"lines": True}),
    ".ndjson": ("read_json", {"lines": True}),
    ".feather": ("read_feather", {}),
}
DECOMPRESSORS: dict[str, Callable[[bytes], bytes]] = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
#: a source made of letters, digits and underscores names a table already in the warehouse
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a source starting with SELECT or WITH is a query on the warehouse (batch scoring)
QUERY = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)

#: the XGBoost objective of each model kind
OBJECTIVES = {"binary": "binary:logistic", "multiclass": "multi:softprob", "regression": "reg:squarederror"}


def locate(source: str) -> str:
    """Where the file ``source`` is: a URL as it is, a path found in the current folder, else in this package."""
    if "://" in source or os.path.isabs(source) or os.path.exists(source):
        return source
    packaged = resources.files(__package__).joinpath(source)
    if packaged.is_file():
        return str(packaged)
    raise hml.PipelineError(f"no data at {source!r}: it is neither in {os.getcwd()} nor in the package {__package__}")


def read_bytes(location: str) -> bytes:
    """The bytes of a local file or of a URL (http(s), or any fsspec URL such as s3:// or gs://)."""
    import urllib.request

    try:
        if location.startswith(("http://", "https://")):
            with urllib.request.urlopen(location, timeout=120) as response:
                return response.read()
        if "://" in location:
            import fsspec

            with fsspec.open(location, "rb") as remote:
                return remote.read()
        with open(location, "rb") as local:
            return local.read()
    except FileNotFoundError:
        raise hml.PipelineError(f"no data at {location}: there is no such file") from None
    except (OSError, ValueError, ImportError) as exc:
        raise hml.PipelineError(f"cannot read {location}: {exc}") from None


def parse(data: bytes, name: str) -> pd.DataFrame:
    """The rows of the file ``name`` holding ``data``, read by its name's ending (see :data:`READERS`)."""
    import pandas as pd

    path = (urllib.parse.urlsplit(name).path if "://" in name else name).lower()
    stem, compression = os.path.splitext(path)
    if compression not in DECOMPRESSORS:
        stem = path
    suffix = os.path.splitext(stem)[1]
    if suffix not in READERS:
        raise hml.PipelineError(f"cannot read {name}: name a file ending in {', '.join(READERS)} (optionally .gz, .bz2 or .xz)")
    try:
        if compression in DECOMPRESSORS:
            data = DECOMPRESSORS[compression](data)
        reader, options = READERS[suffix]
        return getattr(pd, reader)(io.BytesIO(data), **options)
    except Exception as exc:  # each reader and decompressor raises its own errors: name the file and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise hml.PipelineError(f"cannot read {name} as {suffix[1:]}{compression if stem != path else ''}: {reason}") from None


def load_source(source: str, warehouse: Warehouse) -> tuple[pd.DataFrame, str]:
    """The rows of ``source`` (see :data:`shared.DATA_SOURCE`) and the sha256 of their content."""
    import pandas as pd

    if TABLE_NAME.match(source):
        if not warehouse.exists(source):
            raise hml.PipelineError(f"no table {source!r} in the warehouse {warehouse.url}: name a table there, or a file path or URL")
        rows = warehouse.table(source)
        hashed = pd.util.hash_pandas_object(rows, index=False).to_numpy()
        digest = hashlib.sha256(repr(list(rows.columns)).encode() + hashed.tobytes()).hexdigest()
        return rows, digest
    location = locate(source)
    data = read_bytes(location)
    return parse(data, location), hashlib.sha256(data).hexdigest()


def split_sql(raw_table: str, *, validation: bool) -> str:
    """SQL selecting the training or the validation rows that ``extract`` marked."""
    return f"SELECT * FROM {raw_table} WHERE {'' if validation else 'NOT '}{VALIDATION}"


@hml.op()
def extract(
    ctx: hml.OpContext,
    source: str = shared.DATA_SOURCE,
    validation_share: float = shared.SPLIT["validation_share"],
    seed: int = shared.SPLIT["seed"],
) -> dict:
    """Load the source's rows into the warehouse and split them into a training and a validation table (see shared.SPLIT)."""
    import numpy as np

    try:
        spec = SplitSpec.from_config(shared.SPLIT, validation_share=validation_share, seed=seed)
    except hml.ConfigError as exc:
        raise hml.PipelineError(str(exc)) from None
    warehouse = ctx.warehouse
    rows, digest = load_source(source, warehouse)
    wanted = [*shared.FEATURES_NUMERIC, *shared.FEATURES_CATEGORICAL, shared.TARGET]
    columns = [*wanted, *(c for c in (spec.key, spec.time) if c and c not in wanted)]
    missing = [column for column in columns if column not in rows.columns]
    if missing:
        raise hml.PipelineError(
            f"the data at {source} lacks column(s) {', '.join(missing)} named in shared.py; it has {', '.join(map(str, rows.columns))}"
        )
    rows = rows[columns].copy()
    ids = row_ids(rows, columns)
    stratify = rows[shared.TARGET] if shared.MODEL_KIND != "regression" and spec.method == "random" else None
    try:
        rows[VALIDATION] = validation_mask(rows, spec, ids=ids, stratify=stratify)
    except hml.ConfigError as exc:
        raise hml.PipelineError(str(exc)) from None
    rows[ROW_ID] = ids.view(np.int64)  # warehouses hold signed 64-bit integers
    raw_table = warehouse.load_dataframe(rows, f"{shared.MODEL_NAME}_raw_{digest[:16]}")
    print(f"extract: {len(rows)} rows from {source} (sha256 {digest[:12]})", file=sys.stderr)
    inputs, held_out = values_ids(rows, [*shared.FEATURES_NUMERIC, *shared.FEATURES_CATEGORICAL]), rows[VALIDATION].to_numpy()
    repeats = int(np.isin(inputs[held_out], inputs[~held_out]).sum())
    if repeats and spec.method == "random":
        print(
            f"extract: {repeats} of {int(held_out.sum())} validation rows repeat a training row's feature values; if they are "
            "copies of one customer's, session's or patient's row, keep those together with shared.SPLIT's key",
            file=sys.stderr,
        )
    warehouse.select_into(split_sql(raw_table, validation=False), TRAINING_TABLE)
    warehouse.select_into(split_sql(raw_table, validation=True), VALIDATION_TABLE)
    counts = warehouse.query(
        f"SELECT (SELECT count(*) FROM {TRAINING_TABLE}) AS training, (SELECT count(*) FROM {VALIDATION_TABLE}) AS validation"
    )
    split = {**spec.to_dict(), "stratified": stratify is not None, "data_sha256": digest}
    print(f"extract: validation is {spec.describe()}{', stratified by class' if stratify is not None else ''}", file=sys.stderr)
    return {
        "source": source,
        "sha256": digest,
        "raw": raw_table,
        "training": TRAINING_TABLE,
        "validation": VALIDATION_TABLE,
        "training_url": warehouse.export(TRAINING_TABLE, ctx.artifact_uri("training.parquet")),
        "validation_url": warehouse.export(VALIDATION_TABLE, ctx.artifact_uri("validation.parquet")),
        "training_rows": int(counts["training"][0]),
        "validation_rows": int(counts["validation"][0]),
        "split": split,
    }


def read_split(ctx: hml.OpContext, tables: dict, split: str, *, columns: list[str] | None = None) -> pd.DataFrame:
    """The ``training`` or ``validation`` rows that ``extract`` exported to the lake (only ``columns``, if given)."""
    import pandas as pd

    return pd.read_parquet(io.BytesIO(ctx.lake.read_bytes(tables[f"{split}_url"])), columns=columns)


@hml.op()
def analyze_features(ctx: hml.OpContext, tables: dict) -> dict:
    """Learn the categories and distributions of every feature, and the target's classes or range, from the training table."""
    container = ctx.get_model(shared.MODEL_NAME)
    container.analyze_distributions(read_split(ctx, tables, "training"))
    return ctx.save_artifact("analysis.json", container.dump_analysis())


@hml.op()
def build_training_matrix(
    ctx: hml.OpContext,
    tables: dict,
    analysis: dict,
    workers: int = shared.TRAINING["workers"],
    external_memory: bool = shared.TRAINING["external_memory"],
) -> dict:
    """Encode the training table into the matrix the model learns from: one file, or Parquet shards for the workers."""
    import numpy as np

    if workers < 1:
        raise hml.PipelineError(f"workers must be 1 or more, got {workers}")

    container = ctx.get_model(shared.MODEL_NAME)
    container.load_analysis(ctx.load_artifact(analysis))
    features, target = container.build_training_matrix(read_split(ctx, tables, "training"))
    if workers > 1 or external_memory:
        rows_per_shard = shared.TRAINING["shard_rows"] if external_memory else None
        return hml.save_training_shards(ctx, features, target, shards=workers, rows_per_shard=rows_per_shard)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=features, target=target)
    return ctx.save_artifact("training_matrix.npz", buffer.getvalue())


@hml.op()
def train_model(
    ctx: hml.OpContext,
    matrix: dict,
    analysis: dict,
    n_estimators: int = 300,
    max_depth: int = 4,
    learning_rate: float = 0.05,
    workers: int = shared.TRAINING["workers"],
    external_memory: bool = shared.TRAINING["external_memory"],
) -> dict:
    """Train an XGBoost model of the kind in shared.MODEL_KIND on the training matrix, on `workers` workers (see shared.TRAINING)."""
    import numpy as np
    from xgboost import XGBClassifier, XGBRegressor

    container = ctx.get_model(shared.MODEL_NAME)
    container.load_analysis(ctx.load_artifact(analysis))
    parameters = {"n_estimators": n_estimators, "max_depth": max_depth, "learning_rate": learning_rate}
    estimator = XGBRegressor if shared.MODEL_KIND == "regression" else XGBClassifier
    model = estimator(**parameters, objective=OBJECTIVES[shared.MODEL_KIND], tree_method="hist", random_state=0)
    if workers > 1 or external_memory:
        # the workers train with xgboost.train: the estimator's settings, as XGBoost's own parameters
        params = {name: value for name, value in model.get_xgb_params().items() if value is not None}
        if shared.MODEL_KIND == "multiclass":
            params["num_class"] = len(container.classes)
        model = hml.train_distributed(
            ctx, matrix, workers=workers, params=params, rounds=n_estimators, kind=shared.MODEL_KIND, external_memory=external_memory
        )
        container.bind_model(model)
        parameters.update(workers=workers, external_memory=external_memory)
        return {**ctx.save_artifact("model.bin", container.serialize_model()), "parameters": parameters}
    arrays = np.load(io.BytesIO(ctx.load_artifact(matrix)))
    model.fit(arrays["features"], arrays["target"])
    container.bind_model(model)
    return {**ctx.save_artifact("model.bin", container.serialize_model()), "parameters": parameters}  # the registry records them


def _load_model(ctx: hml.OpContext, model: dict, analysis: dict) -> hml.ModelContainer:
    container = ctx.get_model(shared.MODEL_NAME)
    container.load_analysis(ctx.load_artifact(analysis))
    return container.deserialize_model(ctx.load_artifact(model))


@hml.op()
def evaluate_model(ctx: hml.OpContext, model: dict, analysis: dict, tables: dict) -> dict:
    """Score the model and its baseline on the held-out validation rows, with intervals; write the HTML report to the lake."""
    container = _load_model(ctx, model, analysis)
    validation = read_split(ctx, tables, "validation")
    verdict = container.assess(validation)
    report = container.evaluation_report(validation, verdict=verdict, run_id=ctx.run_id, split=tables.get("split"))
    uri = ctx.save_artifact("evaluation.html", report.encode())["uri"]
    split = tables.get("split") or {}
    shown = SplitSpec.from_record(split).describe() + (", stratified by class" if split.get("stratified") else "")
    print(f"validation: rows {verdict['rows']}, {shown}; the baseline is {verdict['baseline_name']}", file=sys.stderr)
    for name, value in verdict["metrics"].items():
        if name != "rows":
            low, high = verdict["intervals"].get(name, (None, None))
            shown = f" (95% interval {low:.4g} to {high:.4g})" if low is not None else ""
            print(f"validation: {name} {value:.4g}{shown}; baseline {verdict['baseline'].get(name, float('nan')):.4g}", file=sys.stderr)
    for reason, count in verdict["left_out"].items():
        print(f"validation: left out {count} rows with a {reason}", file=sys.stderr)
    for feature, count in verdict["unknown_categories"].items():
        print(f"validation: {count} rows hold a {feature} category training never saw", file=sys.stderr)
    print(f"evaluation report: {uri}", file=sys.stderr)
    return verdict


@hml.op(cache=False)  # it changes the registry, and reads the model in service there: run it every time
def publish_model(ctx: hml.OpContext, model: dict, analysis: dict, evaluation: dict, tables: dict, force: bool = False) -> str:
    """Publish the model with its lineage; it goes into service only if it beats its baseline and the one in service by shared.PROMOTION.

    Both are scored on the validation rows whose feature values neither trained on. A first model goes into
    service if it beats its baseline; ``force`` puts this one in service anyway. A model that is not promoted stays in the
    registry (``models list``).
    """
    container = _load_model(ctx, model, analysis)
    parameters = {**model.get("parameters", {}), "force": force}
    uri = container.publish(
        run_id=ctx.run_id,
        metrics=evaluation["metrics"],
        promote=shared.PROMOTION,
        holdout=read_split(ctx, tables, "validation"),
        force=force,
        lineage={
            "parameters": parameters,
            "data": {"source": tables["source"], "sha256": tables["sha256"]},
            "split": tables.get("split", {}),
            "evaluation": evaluation,
        },
        training_rows=read_split(ctx, tables, "training", columns=[ROW_ID, *container.features]),
    )
    print(f"publish: {container.decision.reason}", file=sys.stderr)
    return uri


# ------------------------------------------------------------------ batch scoring
@hml.op(cache=False)  # its source may be a warehouse query, whose rows the cache's key cannot see
def plan_scoring(ctx: hml.OpContext, source: str = shared.SCORING["source"], shards: int = shared.SCORING["shards"]) -> list:
    """Copy the rows to score into the lake, shared.SCORING["chunk_rows"] rows at a time, and deal them out to `shards` shards."""
    location = source if TABLE_NAME.match(source) or QUERY.match(source) else locate(source)
    staged = scoring.stage(
        location, warehouse=ctx.warehouse, lake=ctx.lake, url=ctx.artifact_uri("rows.parquet"), chunk_rows=shared.SCORING["chunk_rows"]
    )
    plan = scoring.plan_shards(staged, shards=shards)
    print(f"plan: {staged['rows']} rows from {source} in {len(staged['row_groups'])} chunks, {len(plan)} shards", file=sys.stderr)
    return plan


def model_in_service(ctx: hml.OpContext, version: str = "") -> hml.ModelContainer:
    """The published model in service, or the published `version` (a training run id)."""
    container = ctx.get_model(shared.MODEL_NAME)
    return container.load(hml.ModelRegistry(container).get(version)["reference"] if version else None)


@hml.op(cache=False)  # it reads the model in service from the registry, which its inputs do not name
def score_shard(ctx: hml.OpContext, shard: dict, version: str = "") -> dict:
    """Score one shard's rows with the model in service (or `version`) as /predict would; refused rows go to the rejects."""
    container = model_in_service(ctx, version)
    drift = report.DriftTally(container)
    part = scoring.score_shard(
        container,
        shard,
        lake=ctx.lake,
        folder=ctx.artifact_uri("parts"),
        run_id=ctx.run_id,
        keys=shared.SCORING["keys"],
        predict=inference.predict,
        observe=drift.add,
    )
    print(f"score: shard {part['shard']}: {part['scored']} rows scored, {part['rejected']} refused", file=sys.stderr)
    return {**part, "drift": drift.counts}


@hml.op(cache=False)  # it writes the predictions tables and reads the model in service
def write_predictions(ctx: hml.OpContext, parts: list, version: str = "") -> dict:
    """Gather the shards' answers into the predictions table, refused rows into the rejects table; report the scored rows' drift."""
    merged = scoring.merge_parts(
        ctx.warehouse, parts, predictions_table=shared.SCORING["predictions_table"], rejects_table=shared.SCORING["rejects_table"]
    )
    print(
        f"predictions: {merged['scored']} of {merged['rows']} rows in table {merged['predictions']},"
        f" {merged['rejected']} refused in table {merged['rejects']}",
        file=sys.stderr,
    )
    container = model_in_service(ctx, version)
    drift = report.DriftTally(container, counts=[part["drift"] for part in parts]).report(thresholds=shared.DRIFT_THRESHOLDS)
    page = report.render_html(drift, model=container.name, version=container.version, source=merged["predictions"])
    merged["drift"] = {"status": drift.status, "html": ctx.save_artifact("drift.html", page.encode())["uri"]}
    for name, feature in drift.features.items():
        if feature.status in ("warn", "alert"):
            print(f"drift: {name} {feature.status}: {'; '.join(feature.reasons)}", file=sys.stderr)
    print(f"drift of the scored rows: {drift.status} ({merged['drift']['html']})", file=sys.stderr)
    return merged
