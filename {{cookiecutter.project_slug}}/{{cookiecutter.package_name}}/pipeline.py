"""The pipelines and their steps.

Training (``{{ cookiecutter.pipeline_name }}``): extract -> analyze -> build the matrix -> train -> evaluate -> publish.
Batch scoring (``{{ cookiecutter.package_name }}_score``): plan -> score each shard -> write the predictions.

Each ``@hml.op()`` runs as its own container in Kubeflow and as ``{{ cookiecutter.package_name }} pipelines
{{ cookiecutter.pipeline_name }} run <step>`` on a laptop. Steps hand each other small values (table
names, artifact URIs, metrics); the data itself stays in the warehouse and the lake: ``extract`` marks
each row for training or validation (``shared.SPLIT``), loads the rows into the warehouse, splits them
with SQL (the same SQL on DuckDB and BigQuery) and exports each split to the lake as Parquet, where the
later steps read it. Each ``@hml.pipeline`` calls its steps in order, handing one's output to the next;
start.py registers the pipelines with the app.

A run reuses a step's recorded output when its inputs, the package's code and its settings are unchanged
(``run-all`` prints it as cached; ``--no-cache`` runs it anyway): after changing only ``n_estimators``,
extract, analyze and build the matrix are not run again. Steps with effects beyond their output, or that
read what their inputs do not name, are declared ``@hml.op(cache=False)`` and run every time.

pandas, numpy and xgboost are imported inside the steps that use them: ``{{ cookiecutter.package_name }} --help``
and the inference server import this module too (to declare the pipelines) and start faster without them.
"""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING

from hmlcore import hml
from hmlcore.model import scoring
from hmlcore.model.split import ROW_ID, SplitSpec, row_ids, validation_mask, values_ids
from hmlcore.serving import report

from {{ cookiecutter.package_name }} import inference, shared

if TYPE_CHECKING:
    import pandas as pd

TRAINING_TABLE = f"{shared.MODEL_NAME}_training"
VALIDATION_TABLE = f"{shared.MODEL_NAME}_validation"
#: the column ``extract`` adds to every row: True for a validation row (ROW_ID, the other column it adds, is
#: each row's identity: the registry keeps those a model trained on, so no later model is judged on them)
VALIDATION = "_validation"


def split_sql(raw_table: str, *, validation: bool) -> str:
    """SQL selecting the training or the validation rows that ``extract`` marked."""
    return f"SELECT * FROM {raw_table} WHERE {'' if validation else 'NOT '}{VALIDATION}"


@hml.op(sources=["source"])  # a table named by source is read afresh each run; a file is cached by its bytes
def extract(
    ctx: hml.OpContext,
    source: str = shared.DATA_SOURCE,
    validation_share: float = shared.SPLIT["validation_share"],
    seed: int = shared.SPLIT["seed"],
) -> dict:
    """Load the source's rows into the warehouse and split them into a training and a validation table (see shared.SPLIT).

    ``source`` is a file's path (in the current folder, else in this package), a URL or a warehouse table: see shared.DATA_SOURCE.
    """
    import numpy as np

    try:
        spec = SplitSpec.from_config(shared.SPLIT, validation_share=validation_share, seed=seed)
    except hml.ConfigError as exc:
        raise hml.PipelineError(str(exc)) from None
    warehouse = ctx.warehouse
    loaded = hml.read_rows(source, warehouse=warehouse, lake=ctx.lake, package=__package__)
    rows, digest = loaded.frame, loaded.sha256
    wanted = [*shared.FEATURES_NUMERIC, *shared.FEATURES_CATEGORICAL, shared.TARGET]
    columns = [*wanted, *(c for c in (spec.key, spec.time) if c and c not in wanted)]
    missing = [column for column in columns if column not in rows.columns]
    if missing:
        raise hml.PipelineError(
            f"the data at {source} lacks column(s) {', '.join(missing)} named in shared.py; it has {', '.join(map(str, rows.columns))}"
        )
    rows = rows[columns].copy()
    ids = row_ids(rows, columns)
{%- if cookiecutter.model_kind == "regression" %}
    stratify = None  # a number has no classes to keep the shares of
{%- else %}
    stratify = rows[shared.TARGET] if spec.method == "random" else None  # each class keeps its share on both sides
{%- endif %}
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
    """Train an XGBoost {{ {'binary': 'binary classifier', 'multiclass': 'multiclass classifier', 'regression': 'regressor'}[cookiecutter.model_kind] }} on the training matrix, on `workers` workers (see shared.TRAINING)."""
    import numpy as np
{%- if cookiecutter.model_kind == "regression" %}
    from xgboost import XGBRegressor
{%- else %}
    from xgboost import XGBClassifier
{%- endif %}

    container = ctx.get_model(shared.MODEL_NAME)
    container.load_analysis(ctx.load_artifact(analysis))
    parameters = {"n_estimators": n_estimators, "max_depth": max_depth, "learning_rate": learning_rate}
{%- if cookiecutter.model_kind == "regression" %}
    model = XGBRegressor(**parameters, objective="reg:squarederror", tree_method="hist", random_state=0)
{%- elif cookiecutter.model_kind == "multiclass" %}
    model = XGBClassifier(**parameters, objective="multi:softprob", tree_method="hist", random_state=0)
{%- else %}
    model = XGBClassifier(**parameters, objective="binary:logistic", tree_method="hist", random_state=0)
{%- endif %}
    if workers > 1 or external_memory:
        # the workers train with xgboost.train: the estimator's settings, as XGBoost's own parameters
        params = {name: value for name, value in model.get_xgb_params().items() if value is not None}
{%- if cookiecutter.model_kind == "multiclass" %}
        params["num_class"] = len(container.classes)
{%- endif %}
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


@hml.pipeline(cron="0 0 * * *", experiment=shared.PROJECT_NAME)
def {{ cookiecutter.pipeline_name }}(
    source: str = shared.DATA_SOURCE,
    validation_share: float = shared.SPLIT["validation_share"],
    seed: int = shared.SPLIT["seed"],
    n_estimators: int = 300,
    max_depth: int = 4,
    learning_rate: float = 0.05,
    workers: int = shared.TRAINING["workers"],
    external_memory: bool = shared.TRAINING["external_memory"],
    force: bool = False,
):
    """Train the model on the rows of `source`, evaluate it, publish it; it goes into service if it beats the one in service."""
    tables = extract(source=source, validation_share=validation_share, seed=seed)
    analysis = analyze_features(tables=tables.output)
    matrix = build_training_matrix(tables=tables.output, analysis=analysis.output, workers=workers, external_memory=external_memory)
    model = train_model(
        matrix=matrix.output,
        analysis=analysis.output,
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        workers=workers,
        external_memory=external_memory,
    )
    evaluation = evaluate_model(model=model.output, analysis=analysis.output, tables=tables.output)
    publish_model(model=model.output, analysis=analysis.output, evaluation=evaluation.output, tables=tables.output, force=force)


# ------------------------------------------------------------------ batch scoring
@hml.op(cache=False)  # its source may be a warehouse query, whose rows the cache's key cannot see
def plan_scoring(ctx: hml.OpContext, source: str = shared.SCORING["source"], shards: int = shared.SCORING["shards"]) -> list:
    """Copy the rows to score into the lake, shared.SCORING["chunk_rows"] rows at a time, and deal them out to `shards` shards."""
    location = hml.locate_source(source, package=__package__)  # a table, a query, a URL, or the path of a file here or in the package
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


@hml.pipeline(cron="0 3 * * *", experiment=shared.PROJECT_NAME)
def {{ cookiecutter.package_name }}_score(
    source: str = shared.SCORING["source"],
    version: str = "",
    shards: int = shared.SCORING["shards"],
):
    """Score the rows of `source` with the model in service (or `version`); refused rows go to a rejects table."""
    plan = plan_scoring(source=source, shards=shards)
    with hml.parallel_for(plan.output, parallelism=shared.SCORING["shards"]) as shard:
        part = score_shard(shard=shard, version=version)
    write_predictions(parts=hml.collected(part), version=version)
