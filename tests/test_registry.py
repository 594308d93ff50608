"""The model registry in the lake: the promotion gate, promotion and rollback with their audit log, and ``models``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hmlcore import hml
from hmlcore.errors import ConfigError, RegistryError
from hmlcore.model.promotion import PromotionRule
from hmlcore.model.registry import ModelRegistry
from tests import _serving
from tests._serving import publish_gated as publish


@pytest.fixture
def lake(tmp_path, monkeypatch):
    monkeypatch.setenv("HML_USER", "ada")
    return str(tmp_path / "lake")


def registry(lake) -> ModelRegistry:
    return ModelRegistry(_serving.container(lake))


def test_a_worse_challenger_is_recorded_rejected_with_both_scores_and_a_better_one_is_promoted(lake):
    first = publish(lake, "run-1", noise=0.6)
    assert first.decision.promoted and "first model" in first.decision.reason
    worse = publish(lake, "run-2", noise=0.95)
    assert not worse.decision.promoted
    assert worse.decision.status == "rejected"
    scores = worse.decision.scores
    assert scores["challenger"] < scores["champion"]
    assert "not promoted" in worse.decision.reason and "run-1" in worse.decision.reason
    assert registry(lake).champion() == "run-1"
    assert _serving.container(lake).load().version == "run-1"

    better = publish(lake, "run-3")
    assert better.decision.promoted and better.decision.scores["challenger"] > better.decision.scores["champion"] + 0.01
    assert _serving.container(lake).load().version == "run-3"
    record = registry(lake).get("run-2")
    assert record["status"] == "rejected" and not record["serving"]
    assert record["decision"]["scores"] == scores
    assert record["decision"]["rule"] == {"metric": "auc", "direction": "higher", "min_gain": 0.01}
    assert record["parameters"] == {"n_estimators": 15} and record["data"] == {"source": "synthetic", "digest": "d1"}
    assert record["created_by"] == "ada" and record["git_commit"] == "c0ffee" and record["run_id"] == "run-2"


def test_force_promotes_a_worse_model_and_a_lower_is_better_rule_reads_the_right_way(lake):
    publish(lake, "run-1")
    forced = publish(lake, "run-2", noise=0.95, force=True)
    assert forced.decision.promoted and forced.decision.forced and "forced" in forced.decision.reason
    assert forced.decision.scores["challenger"] < forced.decision.scores["champion"]  # both scored, for the record
    lower = publish(lake, "run-3", promote={"metric": "log_loss"})
    assert lower.decision.rule == {"metric": "log_loss", "direction": "lower", "min_gain": 0.0}
    assert lower.decision.promoted  # the clean model has a lower log-loss than the forced noisy one


def test_a_bad_rule_or_a_missing_holdout_fails_before_anything_is_written(lake, tmp_path):
    with pytest.raises(ConfigError, match="promotion metric 'aucc' is not evaluated: choose one of"):
        publish(lake, "run-1", promote={"metric": "aucc", "direction": "higher"})
    with pytest.raises(ConfigError, match="unknown key"):
        publish(lake, "run-1", promote={"metrik": "auc"})
    with pytest.raises(ConfigError, match="higher or lower"):
        PromotionRule.from_config({"metric": "my_score"})
    assert not (tmp_path / "lake").exists()


def test_promote_and_rollback_round_trip_with_the_audit_log(lake):
    for run in ("run-1", "run-2", "run-3"):
        publish(lake, run, promote=True)
    reg = registry(lake)
    assert reg.champions() == ["run-1", "run-2", "run-3"]
    back = reg.rollback(reason="run-3 mislabels trucks")
    assert (back["from"], back["to"], back["action"], back["by"], back["reason"]) == (
        "run-3",
        "run-2",
        "rollback",
        "ada",
        "run-3 mislabels trucks",
    )
    assert _serving.container(lake).load().version == "run-2"
    reg.rollback()
    assert reg.champion() == "run-1"
    with pytest.raises(RegistryError, match="'run-1' is the first champion: there is no earlier one"):
        reg.rollback()
    reg.promote("run-3", reason="fixed upstream")
    assert _serving.container(lake).load().version == "run-3"
    log = reg.moves()
    assert [(m["action"], m["from"], m["to"]) for m in log] == [
        ("publish", None, "run-1"),
        ("publish", "run-1", "run-2"),
        ("publish", "run-2", "run-3"),
        ("rollback", "run-3", "run-2"),
        ("rollback", "run-2", "run-1"),
        ("promote", "run-1", "run-3"),
    ]
    assert all(m["at"] and m["by"] == "ada" for m in log)
    assert [v["status"] for v in reg.versions()] == ["champion", "retired", "retired"]


def test_a_tampered_version_is_refused_and_the_pointer_stays(lake):
    publish(lake, "run-1", promote=True)
    publish(lake, "run-2", promote=True)
    reg = registry(lake)
    reference = json.loads(reg.lake.read_bytes(reg.get("run-1")["reference"]))
    model_file = reference["artifacts"]["model"]["uri"]
    reg.lake.write_bytes(model_file, reg.lake.read_bytes(model_file) + b"x")
    with pytest.raises(RegistryError, match="version 'run-1' fails verification: .*sha256"):
        reg.promote("run-1")
    assert reg.champion() == "run-2" and len(reg.moves()) == 2
    with pytest.raises(RegistryError, match="no version 'run-9' of model 'risk'.*the newest: run-2, run-1"):
        reg.promote("run-9")


def cli_app(lake) -> hml.HmlApp:
    app = hml.HmlApp(name="demo-models", package_entrypoint="demo")
    app.register_model(_serving.MODEL, _serving.container(lake))
    return app


def test_models_list_show_promote_rollback_on_the_command_line(lake):
    runner = CliRunner()
    empty = runner.invoke(cli_app(lake).cli(), ["models", "list"])
    assert empty.exit_code == 1 and empty.output.strip() == "Error: no version is published yet: run the training pipeline first"
    rollback = runner.invoke(cli_app(lake).cli(), ["models", "rollback"])
    assert rollback.exit_code == 1 and len(rollback.output.strip().splitlines()) == 1 and "nothing to roll back" in rollback.output

    publish(lake, "run-1", noise=0.6)
    publish(lake, "run-2", noise=0.95)
    publish(lake, "run-3")
    listed = runner.invoke(cli_app(lake).cli(), ["models", "list"])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split()[:3] == ["VERSION", "CREATED", "(UTC)"]
    assert [line.split()[0] for line in lines[1:]] == ["*", "run-2", "run-1"] and lines[1].split()[1] == "run-3"
    assert "rejected" in lines[2] and "auc" in lines[2] and "retired" in lines[3]
    as_json = json.loads(runner.invoke(cli_app(lake).cli(), ["models", "list", "--json"]).output)
    assert [(r["version"], r["status"], r["serving"]) for r in as_json] == [
        ("run-3", "champion", True),
        ("run-2", "rejected", False),
        ("run-1", "retired", False),
    ]

    shown = runner.invoke(cli_app(lake).cli(), ["models", "show", "run-2"])
    assert shown.exit_code == 0 and "not promoted" in shown.output and "parameter   n_estimators = 15" in shown.output
    bad = runner.invoke(cli_app(lake).cli(), ["models", "show", "nope"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: no version 'nope'") and len(bad.output.strip().splitlines()) == 1

    promoted = runner.invoke(cli_app(lake).cli(), ["models", "promote", "run-2", "--reason", "shadow test passed"])
    assert promoted.exit_code == 0 and promoted.output.strip() == "promoted run-2 (was run-3)"
    rolled = runner.invoke(cli_app(lake).cli(), ["models", "rollback", "--reason", "oops"])
    assert rolled.exit_code == 0 and rolled.output.strip() == "rolled back to run-3 (was run-2)"
    moves = registry(lake).moves()
    assert (moves[-1]["reason"], moves[-2]["reason"]) == ("oops", "shadow test passed")


@pytest.mark.slow
def test_the_registry_works_on_gcs_with_only_puts_gets_and_listings(monkeypatch):
    """The same gate, listing and rollback on a ``gs://`` lake, against the local GCS emulator."""
    from tests.gcs import gcs_emulator

    monkeypatch.setenv("HML_USER", "ada")
    with gcs_emulator() as gcs:
        lake = gcs.fresh_prefix()
        publish(lake, "run-1", noise=0.6)
        publish(lake, "run-2", noise=0.95)
        publish(lake, "run-3")
        reg = registry(lake)
        assert [(v["version"], v["status"]) for v in reg.versions()] == [("run-3", "champion"), ("run-2", "rejected"), ("run-1", "retired")]
        reg.rollback(reason="on gcs")
        assert _serving.container(lake).load().version == "run-1"
        assert [m["to"] for m in reg.moves()] == ["run-1", "run-3", "run-1"]


def test_a_registered_container_publishes_to_its_apps_lake_and_records_its_image_without_a_pointer_to_the_app(tmp_path, monkeypatch):
    from xgboost import XGBClassifier

    monkeypatch.setenv("HML_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("HML_IMAGE", raising=False)
    app = hml.HmlApp(name="demo-models", package_entrypoint="demo", image_url="registry.example/demo:7")
    c = app.register_model(
        _serving.MODEL, hml.ModelContainer(_serving.MODEL, _serving.PROJECT, _serving.NUMERIC, _serving.CATEGORICAL, "hurt")
    )
    assert not hasattr(c, "app")  # the container knows its lake and image, not the app
    frame = _serving.training_frame()
    features, target = c.analyze_distributions(frame).build_training_matrix(frame)
    c.bind_model(XGBClassifier(n_estimators=5, max_depth=2, n_jobs=1, random_state=0).fit(features, target))
    c.publish(run_id="run-1", git_commit="c0ffee")
    assert c.lake is app.lake and c.reference_uri.startswith(app.lake.url)
    assert ModelRegistry(c).get("run-1")["image"] == "registry.example/demo:7"
