"""Training on N workers with XGBoost's own collective, as N local processes given Kubeflow Trainer's DMLC_* contract.

The fast tests hold the pieces to their contract: the variables a worker reads, the Parquet shards it
reads its share of, the one-line errors. The slow ones bake a package of each kind and train it with
``run-all --param workers=N`` for N = 1, 2 and 3: N = 1 is today's single process (the same model bytes as
the estimator fitted on the matrix directly), N > 1 trains within the 95% interval of the one-process model,
and a worker killed mid-training fails the step with one line naming it, leaves no process behind, and
``run-all --resume`` finishes the run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hmlcore.model.distributed import Collective, TrainingError, read_shards, shards_of, write_shards
from hmlcore.model.worker import main as worker_main
from hmlcore.pipelines.training import run_local_workers
from hmlcore.storage.lake import Lake

from .conftest import BIN, _group_members, pip_install_editable, run, start_process, stop_group

CONTRACT = {"DMLC_TRACKER_URI": "job-node-0-0.job", "DMLC_TRACKER_PORT": "29500", "DMLC_TASK_ID": "2", "DMLC_NUM_WORKER": "3"}


def test_a_worker_reads_its_place_from_the_trainer_runtime_variables():
    assert Collective.from_env(CONTRACT) == Collective("job-node-0-0.job", 29500, 2, 3)
    assert Collective.from_env(CONTRACT).env() == CONTRACT


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DMLC_TASK_ID": ""}, "needs DMLC_TASK_ID set"),
        ({"DMLC_TRACKER_PORT": "http"}, "DMLC_TRACKER_PORT is 'http', not a whole number"),
        ({"DMLC_TASK_ID": "3"}, "DMLC_TASK_ID 3 is not a rank among DMLC_NUM_WORKER 3 workers"),
    ],
    ids=["missing", "not-a-number", "rank-out-of-range"],
)
def test_a_worker_refuses_a_broken_contract_in_one_line(change: dict, message: str):
    with pytest.raises(TrainingError, match=re.escape(message)):
        Collective.from_env({**CONTRACT, **change})


def test_the_worker_command_without_its_variables_says_which_are_missing(monkeypatch, capsys):
    for name in CONTRACT:
        monkeypatch.delenv(name, raising=False)
    assert worker_main(["{}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "DMLC_TRACKER_URI, DMLC_TRACKER_PORT, DMLC_TASK_ID, DMLC_NUM_WORKER" in err


def test_shards_deal_the_rows_out_and_each_worker_reads_only_its_own(tmp_path: Path):
    lake = Lake(str(tmp_path / "lake"))
    features = np.arange(70, dtype=np.float64).reshape(35, 2)
    target = np.arange(35) % 3
    shards = write_shards(lake, lake.uri("matrix"), features, target, shards=6)
    assert [shard["rows"] for shard in shards] == [6, 6, 6, 6, 6, 5]
    mine = shards_of(shards, rank=1, world=3)
    assert [Path(shard["uri"]).name for shard in mine] == ["part-00001.parquet", "part-00004.parquet"]
    got_features, got_target = read_shards(lake, mine)
    rows = [i for i in range(35) if i % 6 in (1, 4)]
    assert sorted(got_features[:, 0].tolist()) == sorted(features[rows, 0].tolist())
    assert sorted(got_target.tolist()) == sorted(target[rows].tolist())
    everything, _ = read_shards(lake, shards)
    assert sorted(everything[:, 1].tolist()) == features[:, 1].tolist()


def test_a_changed_shard_or_too_few_rows_is_refused(tmp_path: Path):
    lake = Lake(str(tmp_path / "lake"))
    shards = write_shards(lake, lake.uri("matrix"), np.ones((4, 2)), np.zeros(4), shards=2)
    lake.write_bytes(shards[1]["uri"], b"not the shard")
    with pytest.raises(TrainingError, match="part-00001.parquet fails verification"):
        read_shards(lake, shards)
    with pytest.raises(TrainingError, match="has 4 rows, fewer than the 5 shards"):
        write_shards(lake, lake.uri("other"), np.ones((4, 2)), np.zeros(4), shards=5)


@pytest.mark.slow
def test_a_failing_worker_stops_the_others_and_is_named(tmp_path: Path):
    """Worker 1 exits 3 at once; worker 0 would sleep a minute: it is stopped, and the error names worker 1."""
    script = (
        "import os, sys, time\n"
        "if os.environ['DMLC_TASK_ID'] == '1':\n    print('no data for me'); sys.exit(3)\n"
        "print('tracker listening', flush=True); time.sleep(60)"
    )
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(TrainingError, match=r"^training worker 1 of 2 exited with code 3: no data for me$"):
        run_local_workers([sys.executable, "-c", script], workers=2, echo=lines.append)
    assert time.monotonic() - started < 50  # not the minute worker 0 would sleep
    assert "worker 1: no data for me" in lines


def _train_in(lake: Lake, *, environ: dict[str, str]) -> dict:
    """Two local workers train on four shards in ``lake``; the job they were given."""
    from hmlcore.model.distributed import estimator_from_booster, training_job
    from hmlcore.pipelines.training import worker_command

    rng = np.random.default_rng(0)
    features = rng.normal(size=(3000, 4))
    target = (features[:, 0] + features[:, 1] > 0).astype(float)
    shards = write_shards(lake, lake.uri("matrix"), features, target, shards=4)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "tree_method": "hist"}
    job = training_job(lake=lake, shards=shards, params=params, rounds=20, output=lake.uri("booster.ubj"))
    lines: list[str] = []
    run_local_workers([*worker_command(), json.dumps(job)], workers=2, echo=lines.append, environ=environ)
    assert "worker 1: worker 1 of 2: 1500 rows from 2 shard(s), in memory" in lines
    model = estimator_from_booster(lake.read_bytes(lake.uri("booster.ubj")), "binary")
    assert ((model.predict_proba(features)[:, 1] > 0.5) == target).mean() > 0.9
    return job


@pytest.mark.slow
def test_workers_train_from_shards_in_an_s3_lake_with_credentials_only_in_their_environment(s3_server):
    """SeaweedFS (a real S3 server) holds the shards and the booster; the job the workers get names no credential."""
    lake = Lake(s3_server.fresh_prefix(), storage_options=s3_server.storage_options())
    job = _train_in(lake, environ={**os.environ, **{k: v for k, v in s3_server.env.items() if k.startswith("AWS_")}})
    assert job["storage_options"] == {"client_kwargs": {"endpoint_url": s3_server.endpoint}}
    assert s3_server.secret_key not in json.dumps(job)


@pytest.mark.slow
def test_workers_train_from_shards_in_a_gcs_lake():
    """A GCS API (gcp-storage-emulator, which gcsfs reaches through STORAGE_EMULATOR_HOST) holds the shards and the booster."""
    from .gcs import gcs_emulator

    with gcs_emulator() as emulator:
        _train_in(Lake(emulator.fresh_prefix()), environ=dict(os.environ))


@pytest.mark.slow
def test_external_memory_streams_many_shards_and_learns_what_memory_learns(tmp_path: Path):
    """Two workers stream three shards each through ExtMemQuantileDMatrix: as accurate as loading them."""
    from hmlcore.model.distributed import estimator_from_booster, training_job
    from hmlcore.pipelines.training import worker_command

    lake = Lake(str(tmp_path / "lake"))
    rng = np.random.default_rng(1)
    features = rng.normal(size=(6000, 5))
    target = (features[:, 0] - features[:, 2] + rng.normal(scale=0.5, size=6000) > 0).astype(float)
    shards = write_shards(lake, lake.uri("matrix"), features, target, shards=6)
    params = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "tree_method": "hist", "seed": 0}
    accuracy = {}
    for external in (False, True):
        output = lake.uri(f"booster-{external}.ubj")
        job = training_job(lake=lake, shards=shards, params=params, rounds=30, output=output, external_memory=external)
        lines: list[str] = []
        run_local_workers([*worker_command(), json.dumps(job)], workers=2, echo=lines.append)
        how = "streamed through external memory" if external else "in memory"
        assert f"worker 1: worker 1 of 2: 3000 rows from 3 shard(s), {how}" in lines
        model = estimator_from_booster(lake.read_bytes(output), "binary")
        accuracy[external] = ((model.predict_proba(features)[:, 1] > 0.5) == target).mean()
    assert accuracy[True] > 0.85 and abs(accuracy[True] - accuracy[False]) < 0.02, accuracy


# ------------------------------------------------------------------ baked packages, trained with run-all
KINDS = {"binary": "dbinary", "multiclass": "dmulti", "regression": "dgems"}
#: the metric each kind's package is promoted on (shared.PROMOTION), and whether higher is better
METRIC = {"binary": "auc", "multiclass": "log_loss", "regression": "rmse"}
ROUNDS = 60


def run_all(root: Path, package: str, home: Path, *params: str) -> subprocess.CompletedProcess:
    command = [str(BIN / package), "pipelines", f"{package}_pipeline", "run-all", "--param", f"n_estimators={ROUNDS}"]
    for param in params:
        command += ["--param", param]
    return run(command, cwd=root, env={"HML_HOME": str(home)})


def outputs(home: Path, run_id: str) -> dict[str, dict]:
    """The JSON output of each step of the run (publish-model's, a plain URI, is left out)."""
    folder = home / "runs" / run_id / "outputs"
    return {step.name: json.loads((step / "output").read_text()) for step in folder.iterdir() if step.name != "publish-model"}


@pytest.fixture(scope="module")
def trained(cookies_session, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A package of each kind, baked, installed, and trained once in one process (workers=1)."""
    out = {}
    for kind, package in KINDS.items():
        result = cookies_session.bake(extra_context={"model_kind": kind, "project_name": f"{package}-model", "package_name": package})
        assert result.exit_code == 0, result.exception
        pip_install_editable(result.project_path)
        root, home = Path(result.project_path), tmp_path_factory.mktemp(f"home-{kind}")
        done = run_all(root, package, home)
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.strip().splitlines()[-1]
        out[kind] = {"root": root, "home": home, "package": package, "run_id": run_id, "outputs": outputs(home, run_id)}
    return out


@pytest.mark.slow
def test_one_worker_is_todays_single_process_with_the_same_model_bytes(trained: dict):
    """workers=1 writes the matrix as one .npz and fits the XGBoost estimator on it in the step: the model is that estimator's bytes."""
    got = trained["binary"]["outputs"]
    assert got["build-training-matrix"]["uri"].endswith("training_matrix.npz") and "workers" not in got["train-model"]["parameters"]
    today = f"""
import hashlib, io, pathlib, numpy as np
from xgboost import XGBClassifier
from dbinary import shared
container = shared.model_container().load_analysis(pathlib.Path({got["analyze-features"]["uri"]!r}).read_bytes())
arrays = np.load(io.BytesIO(pathlib.Path({got["build-training-matrix"]["uri"]!r}).read_bytes()))
model = XGBClassifier(
    n_estimators={ROUNDS}, max_depth=4, learning_rate=0.05, objective="binary:logistic", tree_method="hist", random_state=0
)
model.fit(arrays["features"], arrays["target"])
print(hashlib.sha256(container.bind_model(model).serialize_model()).hexdigest())
"""
    done = run([sys.executable, "-c", today], cwd=trained["binary"]["root"], check=True)
    assert got["train-model"]["sha256"] == done.stdout.strip()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_n_workers_train_one_model_as_good_as_one_process(trained: dict, kind: str, workers: int):
    root, home, package = (trained[kind][key] for key in ("root", "home", "package"))
    done = run_all(root, package, home, f"workers={workers}")
    assert done.returncode == 0, done.stderr
    got = outputs(home, done.stdout.strip().splitlines()[-1])
    shards = got["build-training-matrix"]["shards"]
    assert len(shards) == workers and all(shard["uri"].endswith(".parquet") for shard in shards)
    assert sum(shard["rows"] for shard in shards) == got["build-training-matrix"]["rows"]
    for rank in range(workers):  # each worker read its own shard: 1/N of the rows
        assert f"worker {rank}: worker {rank} of {workers}: {shards[rank]['rows']} rows from 1 shard(s)" in done.stderr
    assert got["train-model"]["parameters"]["workers"] == workers
    metric = METRIC[kind]
    single = trained[kind]["outputs"]["evaluate-model"]
    low, high = single["intervals"][metric]
    value = got["evaluate-model"]["metrics"][metric]
    print(f"{kind}: {metric} {value:.4f} on {workers} workers; {single['metrics'][metric]:.4f} ({low:.4f} to {high:.4f}) in one process")
    assert low <= value <= high
    assert "publish:" in done.stderr  # the step published as the one-process run does


@pytest.mark.slow
def test_external_memory_on_workers_trains_as_well_as_one_process(trained: dict):
    root, home, package = (trained["binary"][key] for key in ("root", "home", "package"))
    done = run_all(root, package, home, "workers=2", "external_memory=true")
    assert done.returncode == 0, done.stderr
    assert "worker 1: worker 1 of 2: " in done.stderr and "streamed through external memory" in done.stderr
    got = outputs(home, done.stdout.strip().splitlines()[-1])
    assert got["train-model"]["parameters"]["external_memory"] is True
    low, high = trained["binary"]["outputs"]["evaluate-model"]["intervals"]["auc"]
    assert low <= got["evaluate-model"]["metrics"]["auc"] <= high


def _worker_pid(group: int, rank: int) -> int | None:
    for pid in _group_members(group):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hmlcore.model.worker" in command and f"DMLC_TASK_ID={rank}".encode() in environ:
            return pid
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_training_fails_the_step_naming_it_and_resume_finishes(trained: dict):
    root, home, package = (trained["binary"][key] for key in ("root", "home", "package"))
    command = [str(BIN / package), "pipelines", f"{package}_pipeline", "run-all", "--param", "workers=2", "--param", "n_estimators=500"]
    process = start_process(
        command, cwd=root, env={**os.environ, "HML_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        seen = []
        for line in process.stderr:
            seen.append(line)
            if "Task 1 got rank 1" in line:  # the collective is up: training has begun
                break
        victim = _worker_pid(process.pid, 1)
        assert victim is not None, "".join(seen)
        os.kill(victim, signal.SIGKILL)
        rest = process.stderr.read()
        assert process.wait(timeout=120) != 0
    finally:
        stop_group(process)
    failure = next(line for line in rest.splitlines() if line.startswith("Error:"))
    assert "step train-model (4/6) failed" in failure and "training worker 1 of 2 was killed by signal SIGKILL" in failure
    assert _worker_pid(process.pid, 0) is None and not _group_members(process.pid)
    run_id = re.search(r"run-all --resume (\S+?)\)", failure).group(1)
    resumed = run(
        [str(BIN / package), "pipelines", f"{package}_pipeline", "run-all", "--resume", run_id], cwd=root, env={"HML_HOME": str(home)}
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "build-training-matrix: succeeded in an earlier attempt, skipped" in resumed.stderr
