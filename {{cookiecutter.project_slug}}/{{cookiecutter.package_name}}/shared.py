"""What training and serving share: the model's name, its features, its target and the container."""

from __future__ import annotations

from importlib import resources

from hmlcore import hml

MODEL_NAME = "{{ cookiecutter.model_name }}"
PROJECT_NAME = "{{ cookiecutter.project_slug }}"

#: the raw data the local pipeline trains on (NASS CDS, US crashes 1997-2002, one row per occupant)
DATA_FILE = resources.files(__package__).joinpath("data", "nass_cds.csv.gz")
#: the warehouse table the raw data is loaded into
RAW_TABLE = "crashes_raw"

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
TARGET = "dead"

#: the probability above which /predict answers "dead": true
THRESHOLD = 0.5

#: when /drift, /metrics and `monitor report` call a feature's drift from the training data a warning
#: or an alert, as (warn, alert): population stability index, share of numbers outside the training
#: range, share of categories never seen in training; with fewer rows than min_rows it is "pending"
DRIFT_THRESHOLDS = {
    "psi": (0.1, 0.25),
    "out_of_range": (0.05, 0.2),
    "unseen": (0.01, 0.05),
    "min_rows": 100,
    "features": {},  # per feature, e.g. {"age": {"psi": (0.2, 0.4)}}
}


def model_container() -> hml.ModelContainer:
    """A fresh container for the model: its features, target and policies for unseen and missing categories.

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
        unknown_category="error",
        missing_category="ignore",
    )
