"""Install the default package as a user would, then run what it promises: its tests, lint, training, serving."""

from __future__ import annotations

import email.parser
import email.policy
import json
import os
import re
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests
import yaml

from hmlcore._version import __version__
from scripts.demo import SAMPLE_CRASH as CRASH

from .conftest import BIN, free_port, run, start_process, wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(baked_default: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`crashed pipelines crashed_pipeline run-all` in a scratch HML_HOME."""
    home = tmp_path_factory.mktemp("hml-home")
    result = run([str(BIN / "crashed"), "pipelines", "crashed_pipeline", "run-all"], cwd=baked_default, env={"HML_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    return {"home": home, "run_id": result.stdout.strip().splitlines()[-1], "stderr": result.stderr}


def test_baked_package_passes_its_own_tests(baked_default: Path):
    result = run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=baked_default)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout


def test_baked_package_lints_clean(baked_default: Path):
    for command in (["ruff", "check", "--no-cache", "."], ["ruff", "format", "--no-cache", "--check", "."]):
        result = run([str(BIN / command[0]), *command[1:]], cwd=baked_default)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_wheel_ships_every_data_file_the_command_and_the_metadata(baked_default: Path, tmp_path: Path):
    """`pip wheel` from pyproject.toml alone (as `make wheels` builds the image's input), with a file of the user's added to data/."""
    source = tmp_path / "source"
    shutil.copytree(baked_default, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__", ".pytest_cache"))
    own = {"crashed/data/own.jsonl": b'{"age": 1}\n', "crashed/data/2024/own.parquet": b"PAR1"}
    for name, data in own.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    pip_wheel = [str(BIN / "python"), "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    result = run([*pip_wheel, "--wheel-dir", "dist", str(source)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("crashed-0.1.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped = (baked_default / "crashed/data/nass_cds.csv.gz").read_bytes()
        assert archive.read("crashed/data/nass_cds.csv.gz") == shipped
        assert {name: archive.read(name) for name in own} == own
        entry_points = archive.read("crashed-0.1.0.dist-info/entry_points.txt").decode()
        metadata = email.parser.BytesParser(policy=email.policy.default).parsebytes(archive.read("crashed-0.1.0.dist-info/METADATA"))
    assert {"crashed/start.py", "crashed/pipeline.py"} <= names and not any(name.startswith("tests/") for name in names)
    assert "[console_scripts]\ncrashed = crashed.start:main" in entry_points
    assert metadata["Name"] == "crashed" and metadata["Version"] == "0.1.0" and metadata["Requires-Python"] == ">=3.11"
    assert f"hmlcore[s3]=={__version__}" in metadata.get_all("Requires-Dist")
    assert {"test", "gcp"} <= set(metadata.get_all("Provides-Extra"))
    assert metadata.get_content().startswith("# car-crashes\n"), "the README is the long description"


def test_the_inference_deployment_mounts_one_writable_tmp(baked_default: Path):
    """hmlcore's Deployment gives the read-only pod one emptyDir on /tmp, where HML_HOME lives; start.py adds no second."""
    result = run([str(BIN / "crashed"), "inference", "manifest"], cwd=baked_default)
    assert result.returncode == 0, result.stderr
    deployment = next(doc for doc in yaml.safe_load_all(result.stdout) if doc and doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = [mount for mount in container["volumeMounts"] if mount["mountPath"].rstrip("/") == "/tmp"]
    assert len(mounts) == 1, container["volumeMounts"]
    volumes = [volume for volume in pod["volumes"] if volume["name"] == mounts[0]["name"]]
    assert len(volumes) == 1 and "emptyDir" in volumes[0], pod["volumes"]
    env = {variable["name"]: variable.get("value") for variable in container["env"]}
    assert env["HML_HOME"].startswith("/tmp/") and "HML_S3_ENDPOINT" in env


def test_help_is_fast_and_lists_the_commands(baked_default: Path):
    result = run([str(BIN / "crashed"), "--help"], cwd=baked_default)
    assert result.returncode == 0
    assert "pipelines" in result.stdout and "inference" in result.stdout
    heavy = "('kfp', 'kubernetes', 'xgboost', 'sklearn', 'pandas', 'numpy')"
    probe = "import sys; from crashed.start import main; sys.argv = ['crashed', '--help']\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
    probe += f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy}), file=sys.stderr)"
    result = run([str(BIN / "python"), "-c", probe], cwd=baked_default)
    assert result.stderr.strip() == "[]", result.stdout + result.stderr


def test_run_all_shows_progress_and_publishes_an_evaluated_model(trained: dict):
    stderr = trained["stderr"]
    for i, step in enumerate(["extract", "analyze-features", "build-training-matrix", "train-model", "evaluate-model", "publish-model"], 1):
        assert f"[{i}/6] {step}: ok" in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("validation: ")]
    print("\n".join(lines))  # the validation metrics with intervals and baselines, recorded in the test log
    assert lines[0].startswith("validation: rows ") and "stratified by class; the baseline is the class prior" in lines[0]
    for name in ("auc", "log_loss", "accuracy", "precision", "recall", "f1"):
        assert any(
            re.match(rf"validation: {name} [0-9.]+ \(95% interval [0-9.]+ to [0-9.]+\); baseline [0-9.]+$", line) for line in lines
        ), name
    pointer = json.loads((trained["home"] / "lake/models/car-crashes/crashed/current.json").read_text())
    reference = json.loads(Path(pointer["reference"]).read_text())
    assert reference["version"] == trained["run_id"]
    assert reference["metrics"]["auc"] > 0.8
    assert {"model", "metadata"} <= set(reference["artifacts"])
    for artifact in reference["artifacts"].values():
        assert len(artifact["sha256"]) == 64 and Path(artifact["uri"]).stat().st_size == artifact["size"]


def test_one_step_runs_as_its_container_would(baked_default: Path, trained: dict):
    command = [str(BIN / "crashed"), "pipelines", "crashed_pipeline", "run", "extract", "--validation-share", "0.5", "--seed", "3"]
    result = run(command, cwd=baked_default, env={"HML_HOME": str(trained["home"])})
    assert result.returncode == 0, result.stderr
    tables = json.loads(result.stdout)
    assert abs(tables["validation_rows"] - tables["training_rows"]) < 200


def test_a_failing_step_is_one_line_and_names_the_value(baked_default: Path, trained: dict):
    command = [str(BIN / "crashed"), "pipelines", "crashed_pipeline", "run", "extract", "--validation-share", "1.5"]
    result = run(command, cwd=baked_default, env={"HML_HOME": str(trained["home"])})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["Error: validation_share must be between 0 and 1, got 1.5"]


def test_run_prod_serves_predictions_with_gunicorn(baked_default: Path, trained: dict):
    port = free_port()
    server = start_process(
        [str(BIN / "crashed"), "inference", "run-prod", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        cwd=baked_default,
        env={**os.environ, "HML_HOME": str(trained["home"])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", server)
        got = requests.get(f"{base}/predict", params=CRASH, timeout=30)
        assert got.status_code == 200, got.text
        answer = got.json()["predictions"][0]
        assert set(answer) == {"dead", "probability"} and 0 < answer["probability"] < 1
        assert answer["dead"] == (1 if answer["probability"] >= 0.5 else 0)
        assert got.json()["model"]["version"] == trained["run_id"]
        posted = requests.post(f"{base}/predict", json=[CRASH, {**CRASH, "speed_band": "1-9", "seatbelt": "belted"}], timeout=30)
        assert posted.status_code == 200, posted.text
        severe, mild = (p["probability"] for p in posted.json()["predictions"])
        assert severe > mild
        bad = requests.post(f"{base}/predict", data="{oops", headers={"Content-Type": "application/json"}, timeout=30)
        assert bad.status_code == 400 and "error" in bad.json()
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=30)
    assert server.returncode == 0
    assert "Booting worker" in stderr
