"""Each model kind baked, trained, served and swapped onto data it has never seen, as a user would.

The binary default is baked, trained and served by test_baked_package; here the multiclass and the
regression packages are trained with `run-all` and served with gunicorn, asked with the README's own
examples; then a package of each kind is pointed (in shared.py) at a data set generated below, with a
string target for the classifiers and missing values in a feature, and its own tests must pass unmodified.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from ._repeated import point_shared_at
from .conftest import BIN, free_port, pip_install_editable, run, start_process, stop_group, wait_ready

pytestmark = pytest.mark.slow

SERVED = {"multiclass": "penguins", "regression": "gems"}


def bake(cookies, kind: str, package: str) -> Path:
    result = cookies.bake(extra_context={"model_kind": kind, "project_name": f"{package}-model", "package_name": package})
    assert result.exit_code == 0, result.exception
    pip_install_editable(result.project_path)
    return Path(result.project_path)


def example_requests(root: Path, package: str, home: Path) -> tuple[str, dict]:
    """What the README asks with: `inference example --query` and `inference example`, for the model in service."""
    env = {"HML_HOME": str(home)}
    query = run([str(BIN / package), "inference", "example", "--query"], cwd=root, env=env)
    record = run([str(BIN / package), "inference", "example"], cwd=root, env=env)
    assert query.returncode == 0 and record.returncode == 0, query.stderr + record.stderr
    return query.stdout.strip(), json.loads(record.stdout)


@pytest.fixture(scope="module")
def served(cookies_session, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The multiclass and the regression package, each baked, installed and trained once with `run-all`."""
    out = {}
    for kind, package in SERVED.items():
        root = bake(cookies_session, kind, package)
        home = tmp_path_factory.mktemp(f"home-{kind}")
        command = [str(BIN / package), "pipelines", f"{package}_pipeline", "run-all", "--param", "n_estimators=80"]
        trained = run(command, cwd=root, env={"HML_HOME": str(home)})
        assert trained.returncode == 0, trained.stderr
        out[kind] = {
            "root": root,
            "home": home,
            "package": package,
            "run_id": trained.stdout.strip().splitlines()[-1],
            "stderr": trained.stderr,
        }
    return out


@pytest.mark.parametrize("kind", sorted(SERVED))
def test_kind_trains_serves_and_answers_in_its_shape(served: dict, kind: str):
    root, home, package, run_id = (served[kind][key] for key in ("root", "home", "package", "run_id"))
    lines = served[kind]["stderr"].splitlines()
    metrics = "\n".join(line for line in lines if line.startswith("validation: "))
    print(metrics)  # the validation metrics with their intervals and baselines, recorded in the test log
    assert f"validation: {'r2' if kind == 'regression' else 'macro_f1'} " in metrics and "; baseline " in metrics
    report = next(line for line in lines if line.startswith("evaluation report: ")).split(": ", 1)[1]
    assert "<svg" in Path(report).read_text()  # the confusion matrix or predicted against actual

    readme = (root / "README.md").read_text()
    assert f"$({package} inference example --query)" in readme and f"[$({package} inference example)]" in readme
    query, record = example_requests(root, package, home)
    rows = [record, {**record, **dict.fromkeys(list(record)[-2:])}]  # and one with two features missing
    port = free_port()
    server = start_process(
        [str(BIN / package), "inference", "run-prod", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=root,
        env={**os.environ, "HML_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server)
        info = requests.get(f"{base}/model", timeout=10).json()
        assert info["version"] == run_id and info["kind"] == kind
        got = requests.get(f"{base}/predict?{query}", timeout=10)
        assert got.status_code == 200, got.text
        posted = requests.post(f"{base}/predict", json=rows, timeout=10)
        assert posted.status_code == 200, posted.text
        answers = got.json()["predictions"] + posted.json()["predictions"]
        assert len(answers) == 1 + len(rows)
        if kind == "multiclass":
            assert info["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
            for answer in answers:
                assert set(answer) == {"species", "probabilities"}
                assert list(answer["probabilities"]) == info["classes"]
                assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4
                assert answer["species"] == max(answer["probabilities"], key=answer["probabilities"].get)
        else:
            low, high = info["target_distribution"]["min"], info["target_distribution"]["max"]
            for answer in answers:
                assert set(answer) == {"price"}
                assert low * 0.5 <= answer["price"] <= high * 1.5, answer
            quantiles = info["target_distribution"]["quantiles"]
            assert quantiles["p05"] <= answers[0]["price"] <= quantiles["p95"]  # the typical diamond, a typical price
        monitored = requests.get(f"{base}/metrics", timeout=10)
        assert monitored.status_code == 200 and 'route="/predict"' in monitored.text
    finally:
        stop_group(server)


# ---------------------------------------------------------------------------------- a data set the template never saw
def generated(kind: str, rows: int = 500, seed: int = 11) -> tuple[pd.DataFrame, dict]:
    """A data set of ``kind`` with a signal to learn, missing values in a numeric and a categorical feature.

    Returns the frame and what shared.py must declare for it.
    """
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 10, rows)
    weight = rng.normal(50, 10, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    effect = pd.Series(colour).map({"red": 2.0, "green": 0.0, "blue": -2.0}).to_numpy()
    frame = pd.DataFrame({"size": size, "weight": weight, "colour": colour})
    if kind == "binary":
        frame["verdict"] = np.where(size + effect + rng.normal(0, 1, rows) > 5, "yes", "no")
    elif kind == "multiclass":
        score = size + effect + rng.normal(0, 0.8, rows)
        frame["grade"] = np.select([score < 3.5, score < 6.5], ["low", "mid"], "high")
    else:
        frame["cost"] = 30 * size + 0.5 * weight + 10 * effect + rng.normal(0, 5, rows)
    frame.loc[rng.choice(rows, rows // 10, replace=False), "weight"] = np.nan
    frame.loc[rng.choice(rows, rows // 20, replace=False), "colour"] = None
    declared = {"FEATURES_NUMERIC": ["size", "weight"], "FEATURES_CATEGORICAL": ["colour"], "TARGET": frame.columns[-1]}
    return frame, declared


SWAPS = {"binary": ("swapbin", "trials.csv"), "multiclass": ("swapmulti", "grades.parquet"), "regression": ("swapreg", "costs.json")}


@pytest.mark.parametrize("kind", sorted(SWAPS))
def test_swapped_data_passes_the_packages_own_tests(cookies_session, kind: str):
    package, name = SWAPS[kind]
    root = bake(cookies_session, kind, package)
    frame, declared = generated(kind)
    target = root / package / "data" / name
    if name.endswith(".csv"):
        frame.to_csv(target, index=False)
    elif name.endswith(".parquet"):
        frame.to_parquet(target, index=False)
    else:
        frame.to_json(target, orient="records")
    point_shared_at(root / package / "shared.py", f"data/{name}", declared)
    tests = run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], cwd=root)
    assert tests.returncode == 0, tests.stdout[-5000:] + tests.stderr[-3000:]
    assert re.search(r"\b(\d+) passed", tests.stdout) and "skipped" not in tests.stdout, tests.stdout[-2000:]
    lint = run([str(BIN / "ruff"), "check", "--no-cache", "."], cwd=root)
    assert lint.returncode == 0, lint.stdout


def test_a_changed_file_is_trained_on_at_the_next_run(served: dict, tmp_path: Path):
    """Run, rewrite the data file's rows in place, run again in the same warehouse: the second model learnt the new rows."""
    root, package = served["regression"]["root"], served["regression"]["package"]
    diamonds = pd.read_csv(root / package / "data" / "diamonds.csv.gz")
    data = tmp_path / "diamonds.csv"
    command = [str(BIN / package), "pipelines", f"{package}_pipeline", "run-all", "--param", f"source={data}", "--param", "n_estimators=10"]
    home = tmp_path / "home"

    def train(rows: pd.DataFrame) -> tuple[str, float]:
        rows.to_csv(data, index=False)
        result = run(command, cwd=root, env={"HML_HOME": str(home)})
        assert result.returncode == 0, result.stderr
        extract = next(line for line in result.stderr.splitlines() if line.startswith("extract: "))
        pointer = json.loads(next((home / "lake" / "models").rglob("current.json")).read_text())
        reference = json.loads(Path(pointer["reference"]).read_text())
        metadata = json.loads(Path(reference["artifacts"]["metadata"]["uri"]).read_text())
        return extract, metadata["target_info"]["distribution"]["max"]

    first = train(diamonds.head(300))
    second = train(diamonds.iloc[300:500].assign(price=lambda d: d["price"] + 100_000))  # same path, new rows
    assert first[0].startswith("extract: 300 rows") and second[0].startswith("extract: 200 rows")
    assert second[1] > first[1] + 90_000


def test_extract_names_what_the_data_lacks(served: dict, tmp_path: Path):
    root, package = served["multiclass"]["root"], served["multiclass"]["package"]
    data = tmp_path / "rows.csv"
    pd.DataFrame({"bill_length_mm": [1.0], "species": ["x"]}).to_csv(data, index=False)
    command = [str(BIN / package), "pipelines", f"{package}_pipeline", "run", "extract", "--source"]
    env = {"HML_HOME": str(tmp_path / "home")}
    lacking = run([*command, str(data)], cwd=root, env=env)
    assert lacking.returncode == 1
    assert lacking.stderr.strip().splitlines() == [
        f"Error: the data at {data} lacks column(s) bill_depth_mm, flipper_length_mm, body_mass_g, island, sex named in shared.py;"
        " it has bill_length_mm, species"
    ]
    for source, message in [
        (str(tmp_path / "nowhere.csv"), "there is no such file"),
        ("rows.xlsx", "neither in"),
        ("no_table", "no table"),
    ]:
        failed = run([*command, source], cwd=root, env=env)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1


def test_every_file_under_data_ships_in_the_wheel(cookies, tmp_path: Path):
    """A user's CSV and Parquet files beside the sample data are in the wheel (so in the image), readable from it."""
    result = cookies.bake()
    root = Path(result.project_path)
    mine = pd.DataFrame({"age": [30, 40], "seatbelt": ["belted", None]})
    mine.to_parquet(root / "crashed" / "data" / "mine.parquet", index=False)
    mine.to_csv(root / "crashed" / "data" / "mine.csv", index=False)
    wheel_command = ["-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."]
    built = run([str(BIN / "python"), *wheel_command], cwd=root)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("crashed-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        data = sorted(name for name in archive.namelist() if name.startswith("crashed/data/"))
        assert data == ["crashed/data/mine.csv", "crashed/data/mine.parquet", "crashed/data/nass_cds.csv.gz"]
        pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(archive.read("crashed/data/mine.parquet"))), mine)
        assert len(pd.read_csv(io.BytesIO(archive.read("crashed/data/nass_cds.csv.gz")), compression="gzip")) > 20_000
