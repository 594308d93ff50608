"""The training pipeline's steps: extract -> analyze -> build matrix -> train -> evaluate -> publish.

Each ``@hml.op()`` runs as its own container in Kubeflow and as ``{{ cookiecutter.package_name }} pipelines
{{ cookiecutter.pipeline_name }} run <step>`` on a laptop. Steps hand each other small values (table
names, artifact URIs, metrics); the data itself stays in the warehouse and the lake: ``extract`` splits
the rows with SQL (the same SQL on DuckDB and BigQuery) and exports each split to the lake as Parquet,
where the later steps read it.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import numpy as np
import pandas as pd
from hmlcore import hml

from {{ cookiecutter.package_name }} import shared

TRAINING_TABLE = "crashes_training"
VALIDATION_TABLE = "crashes_validation"


def split_sql(validation_share: float, seed: int, *, validation: bool) -> str:
    """SQL selecting the training or the validation rows: a deterministic split on the occupant id."""
    cut = int(round(validation_share * 1000))
    side = "<" if validation else ">="
    return f"SELECT * FROM {shared.RAW_TABLE} WHERE MOD(occupant_id * 2654435761 + {seed}, 1000) {side} {cut}"


@hml.op()
def extract(ctx: hml.OpContext, validation_share: float = 0.2, seed: int = 7) -> dict:
    """Split the crash records into a training and a validation table in the warehouse."""
    if not 0 < validation_share < 1:
        raise hml.PipelineError(f"validation_share must be between 0 and 1, got {validation_share}")
    warehouse = ctx.warehouse
    if not warehouse.exists(shared.RAW_TABLE):
        raw = pd.read_csv(shared.DATA_FILE)
        raw.insert(0, "occupant_id", np.arange(1, len(raw) + 1))
        warehouse.load_dataframe(raw, shared.RAW_TABLE)
    warehouse.select_into(split_sql(validation_share, seed, validation=False), TRAINING_TABLE)
    warehouse.select_into(split_sql(validation_share, seed, validation=True), VALIDATION_TABLE)
    counts = warehouse.query(
        f"SELECT (SELECT count(*) FROM {TRAINING_TABLE}) AS training, (SELECT count(*) FROM {VALIDATION_TABLE}) AS validation"
    )
    folder = f"runs/{ctx.pipeline}/{ctx.run_id}/{ctx.step}"
    return {
        "training": TRAINING_TABLE,
        "validation": VALIDATION_TABLE,
        "training_url": warehouse.export(TRAINING_TABLE, ctx.lake.uri(folder, "training.parquet")),
        "validation_url": warehouse.export(VALIDATION_TABLE, ctx.lake.uri(folder, "validation.parquet")),
        "training_rows": int(counts["training"][0]),
        "validation_rows": int(counts["validation"][0]),
    }


def read_split(ctx: hml.OpContext, tables: dict, split: str) -> pd.DataFrame:
    """The ``training`` or ``validation`` rows that ``extract`` exported to the lake."""
    return pd.read_parquet(io.BytesIO(ctx.lake.read_bytes(tables[f"{split}_url"])))


@hml.op()
def analyze_features(ctx: hml.OpContext, tables: dict) -> dict:
    """Learn the categories and distributions of every feature from the training table."""
    container = ctx.get_model(shared.MODEL_NAME)
    container.analyze_distributions(read_split(ctx, tables, "training"))
    return ctx.save_artifact("analysis.json", container.dump_analysis())


@hml.op()
def build_training_matrix(ctx: hml.OpContext, tables: dict, analysis: dict) -> dict:
    """Encode the training table into the matrix the model learns from."""
    container = ctx.get_model(shared.MODEL_NAME)
    container.load_analysis(ctx.load_artifact(analysis))
    features, target = container.build_training_matrix(read_split(ctx, tables, "training"))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, features=features, target=target)
    return ctx.save_artifact("training_matrix.npz", buffer.getvalue())


@hml.op()
def train_model(
    ctx: hml.OpContext,
    matrix: dict,
    n_estimators: int = 300,
    max_depth: int = 4,
    learning_rate: float = 0.05,
) -> dict:
    """Train an XGBoost classifier on the training matrix."""
    from xgboost import XGBClassifier

    arrays = np.load(io.BytesIO(ctx.load_artifact(matrix)))
    model = XGBClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        learning_rate=learning_rate,
        objective="binary:logistic",
        tree_method="hist",
        random_state=0,
    )
    model.fit(arrays["features"], arrays["target"])
    container = ctx.get_model(shared.MODEL_NAME).bind_model(model)
    return ctx.save_artifact("model.bin", container.serialize_model())


def _load_model(ctx: hml.OpContext, model: dict, analysis: dict) -> hml.ModelContainer:
    container = ctx.get_model(shared.MODEL_NAME)
    container.load_analysis(ctx.load_artifact(analysis))
    return container.deserialize_model(ctx.load_artifact(model))


@hml.op()
def evaluate_model(ctx: hml.OpContext, model: dict, analysis: dict, tables: dict) -> dict:
    """Score the model on the held-out validation table: AUC, log-loss and accuracy."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    container = _load_model(ctx, model, analysis)
    validation = read_split(ctx, tables, "validation")
    probabilities = container.predict_proba(container.encode(validation))[:, 1]
    truth = validation[shared.TARGET].to_numpy(dtype=np.int64)
    metrics: dict[str, Any] = {
        "auc": round(float(roc_auc_score(truth, probabilities)), 6),
        "log_loss": round(float(log_loss(truth, probabilities)), 6),
        "accuracy": round(float(accuracy_score(truth, probabilities >= shared.THRESHOLD)), 6),
        "validation_rows": len(validation),
    }
    print(f"validation: AUC {metrics['auc']:.4f}, log-loss {metrics['log_loss']:.4f}, accuracy {metrics['accuracy']:.4f}", file=sys.stderr)
    return metrics


@hml.op()
def publish_model(ctx: hml.OpContext, model: dict, analysis: dict, metrics: dict) -> str:
    """Publish the model, its feature metadata and its metrics; the inference API loads the newest."""
    container = _load_model(ctx, model, analysis)
    return container.publish(run_id=ctx.run_id, metrics=metrics)
