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


def model_container() -> hml.ModelContainer:
    """A fresh container for the model: its features, target and policy for unseen categories."""
    return hml.ModelContainer(
        name=MODEL_NAME,
        project_name=PROJECT_NAME,
        features_numeric=FEATURES_NUMERIC,
        features_categorical=FEATURES_CATEGORICAL,
        target=TARGET,
        unknown_category="error",
    )
