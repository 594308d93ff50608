"""What training and serving share: the model's name and kind, its data, its features, its target and the container."""

from __future__ import annotations

from hmlcore import hml

MODEL_NAME = "{{ cookiecutter.model_name }}"
PROJECT_NAME = "{{ cookiecutter.project_slug }}"

#: what the model predicts, chosen when this package was made: "binary" (one of two classes), "multiclass" (one of
#: several) or "regression" (a number). pipeline.train_model and the tests are written for it.
MODEL_KIND = "{{ cookiecutter.model_kind }}"

#: the rows the pipeline trains on: the path or URL (s3://, gs://, https://) of a CSV, Parquet or JSON file, or
#: the name of a table already in the warehouse. A relative path is looked up in the current folder, then in
#: this package, whose data/ folder ships in the wheel and so in the image. `run-all --param source=...`
#: overrides it for one run. Each run reads it afresh: a changed file is a new table, never a stale one.
{%- if cookiecutter.model_kind == "binary" %}
DATA_SOURCE = "data/nass_cds.csv.gz"  # NASS CDS: US crashes 1997-2002, one row per occupant
{%- elif cookiecutter.model_kind == "multiclass" %}
DATA_SOURCE = "data/penguins.csv.gz"  # Palmer penguins: three species measured in Antarctica 2007-2009
{%- else %}
DATA_SOURCE = "data/diamonds.csv.gz"  # 5,000 diamonds sold in the US, with their price in dollars
{%- endif %}

{%- if cookiecutter.model_kind == "binary" %}

FEATURES_NUMERIC = [
    "age",  # age of the occupant, years
    "year_vehicle",  # model year of the vehicle
    "frontal",  # 1 = frontal impact
    "airbag_deployed",  # 1 = an airbag deployed
]
FEATURES_CATEGORICAL = [
    "speed_band",  # estimated impact speed, km/h: 1-9, 10-24, 25-39, 40-54, 55+
    "airbag",  # airbag fitted: airbag / none
    "seatbelt",  # belted / none
    "sex",  # f / m
    "occupant_role",  # driver / pass
]
#: the column the model predicts: 1 if the occupant died, else 0
TARGET = "dead"
{%- elif cookiecutter.model_kind == "multiclass" %}

FEATURES_NUMERIC = [
    "bill_length_mm",
    "bill_depth_mm",
    "flipper_length_mm",
    "body_mass_g",
]
FEATURES_CATEGORICAL = [
    "island",  # Biscoe / Dream / Torgersen
    "sex",  # female / male
]
#: the column the model predicts: Adelie / Chinstrap / Gentoo
TARGET = "species"
{%- else %}

FEATURES_NUMERIC = [
    "carat",  # weight
    "depth",  # total depth percentage
    "table",  # width of the top relative to the widest point, %
    "x",  # length, mm
    "y",  # width, mm
    "z",  # depth, mm
]
FEATURES_CATEGORICAL = [
    "cut",  # Fair / Good / Very Good / Premium / Ideal
    "color",  # D (best) to J (worst)
    "clarity",  # I1 (worst) to IF (best)
]
#: the column the model predicts: the price in US dollars
TARGET = "price"
{%- endif %}
{%- if cookiecutter.model_kind == "binary" %}

#: the probability of the second class above which /predict answers it
THRESHOLD = 0.5
{%- endif %}

#: how `extract` holds rows out for validation (the evaluation, the gate and the package's tests judge the
#: model on them): by default a random `validation_share` of the rows drawn from `seed`, stratified by class
#: for a classifier. Name a `key` column when rows come in groups (a user's or a patient's rows, a session's
#: events) and the model will meet new groups: a group then stays on one side (`extract` prints how many
#: validation rows repeat a training row's values: copies of one customer's row call for a key). Name a `time` column when the
#: model will predict the future from the past: the latest `validation_share` of the rows is validation.
#: `run-all --param validation_share=0.25 --param seed=3` overrides the share and the seed for one run.
SPLIT = {"validation_share": 0.2, "seed": 7, "key": None, "time": None}

#: when a newly trained model replaces the one in service: the publish step scores both on the validation
#: rows whose feature values neither trained on and promotes the new one only if its `metric` is better by more than 0 and by at
#: least `min_gain` ("direction": "higher" or "lower" says which way is better; known metrics need none). A
#: model that does not beat its baseline (the class prior, or the training mean) is never promoted; a first
#: model that does is; `run-all --param force=true` promotes anyway; `{{ cookiecutter.package_name }} models` lists,
#: promotes and rolls back versions.
{%- if cookiecutter.model_kind == "binary" %}
PROMOTION = {"metric": "auc", "min_gain": 0.0}
{%- elif cookiecutter.model_kind == "multiclass" %}
PROMOTION = {"metric": "log_loss", "min_gain": 0.0}
{%- else %}
PROMOTION = {"metric": "rmse", "min_gain": 0.0}
{%- endif %}

#: how the model trains. `workers`: 1 trains in the step's own process; N > 1 trains one model with XGBoost's
#: collective on N workers, each reading 1/N of the training matrix (written as Parquet shards): N local
#: processes with `run-all`, a Kubeflow Trainer TrainJob of N nodes on the cluster (see the README).
#: `external_memory`: each worker streams its shards, `shard_rows` rows at a time, through XGBoost's external
#: memory instead of loading them: slower, but a table larger than the memory trains at all.
#: `run-all --param workers=3 --param external_memory=true` overrides them for one run.
TRAINING = {"workers": 1, "external_memory": False, "shard_rows": 100_000}

#: the batch scoring pipeline (`{{ cookiecutter.package_name }}_score`): the rows it scores (a warehouse table, a SELECT
#: on the warehouse, or the path or URL of a CSV or Parquet file or of a folder of them), the input columns copied
#: beside each answer (an id to join the predictions back on), how many shards score at once on Kubeflow, how many
#: rows a shard holds in memory at a time, and the warehouse tables it writes: the predictions, and the rows the
#: API would refuse with the reason. `run-all --param source=... --param version=...` overrides the source and the
#: model version (default: the one in service) for one run.
SCORING = {
    "source": DATA_SOURCE,
    "keys": [],
    "shards": 4,
    "chunk_rows": 50_000,
    "predictions_table": f"{MODEL_NAME}_predictions",
    "rejects_table": f"{MODEL_NAME}_rejects",
}

#: when /drift, /metrics and `monitor report` call a feature's drift from the training data a warning
#: or an alert, as (warn, alert): population stability index, share of numbers outside the training
#: range, share of categories never seen in training; with fewer rows than min_rows it is "pending"
DRIFT_THRESHOLDS = {
    "psi": (0.1, 0.25),
    "out_of_range": (0.05, 0.2),
    "unseen": (0.01, 0.05),
    "min_rows": 100,
    "features": {},  # per feature, e.g. {"<feature>": {"psi": (0.2, 0.4)}}
}


def model_container() -> hml.ModelContainer:
    """A fresh container for the model: its kind, features, target and policies for unseen and missing categories.

    ``unknown_category``: ``"error"`` refuses a category the model never saw (the API answers 422 naming
    the feature and the value); ``"other"`` would send it to an extra ``<feature>=__other__`` column.
    ``missing_category``: ``"ignore"`` encodes a missing category as all zeros. A missing number is NaN,
    which XGBoost handles.
    """
    return hml.ModelContainer(
        name=MODEL_NAME,
        project_name=PROJECT_NAME,
        features_numeric=FEATURES_NUMERIC,
        features_categorical=FEATURES_CATEGORICAL,
        target=TARGET,
        kind=MODEL_KIND,
{%- if cookiecutter.model_kind == "binary" %}
        threshold=THRESHOLD,
{%- endif %}
        unknown_category="error",
        missing_category="ignore",
    )
