"""The step cache: a step whose inputs, code and settings are unchanged reuses the output a succeeded run recorded.

The quick tests run the demo pipeline (tests/pipeline_demo.py) in process; the slow one bakes a package,
installs it and runs ``run-all`` as a user would: changing only ``n_estimators`` skips extract, analysis
and matrix and gives the model a full run gives; changing the data, a feature list in shared.py or a
step's code runs the steps again.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hmlcore import hml
from hmlcore.errors import ConfigError, PipelineError
from hmlcore.pipelines.cache import Hit, StepCache, cache_enabled, step_key
from hmlcore.storage.lake import Lake

from .conftest import BIN, pip_install_editable, run
from .pipeline_demo import create_app

STEPS = ["make-numbers", "summarise", "shout", "check"]


def run_all(home: Path, *args: str):
    """``hmldemo pipelines demo run-all ...`` in process, with HML_HOME=home; the result and its run id."""
    result = CliRunner().invoke(create_app().cli(), ["pipelines", "demo", "run-all", *args], env={"HML_HOME": str(home)})
    return result, result.stdout.strip().splitlines()[-1] if result.exit_code == 0 else None


def cached(stderr: str) -> dict[str, str]:
    """``{step: run id}`` of each step ``run-all`` printed as cached."""
    return dict(re.findall(r"^\[\d/\d\] ([a-z-]+): cached \(from run (\S+)\)$", stderr, re.M))


def ran(stderr: str) -> list[str]:
    return re.findall(r"^\[\d/\d\] ([a-z-]+): ok in ", stderr, re.M)


def output_of(home: Path, run_id: str, task: str) -> str:
    return (home / "runs" / run_id / "outputs" / task / "output").read_text(encoding="utf-8")


def test_an_unchanged_rerun_reuses_every_output_and_says_from_which_run(tmp_path: Path):
    first, first_id = run_all(tmp_path, "--param", "count=3")
    assert first.exit_code == 0, first.output
    assert sorted(ran(first.stderr)) == sorted(STEPS) and not cached(first.stderr)
    again, again_id = run_all(tmp_path, "--param", "count=3")
    assert again.exit_code == 0, again.output
    assert cached(again.stderr) == dict.fromkeys(STEPS, first_id) and not ran(again.stderr), again.stderr
    for task in ("make-numbers", "summarise", "shout"):
        assert output_of(tmp_path, again_id, task) == output_of(tmp_path, first_id, task)
    state = json.loads((tmp_path / "runs" / again_id / "state.json").read_text(encoding="utf-8"))
    assert state["status"] == "succeeded" and state["tasks"]["summarise"]["cached_from"] == first_id


def test_a_changed_parameter_reruns_its_step_and_what_reads_its_output(tmp_path: Path):
    first, first_id = run_all(tmp_path, "--param", "count=3")
    assert first.exit_code == 0, first.output
    changed, _ = run_all(tmp_path, "--param", "count=4")
    assert changed.exit_code == 0, changed.output
    assert cached(changed.stderr) == {"shout": first_id}, changed.stderr
    assert sorted(ran(changed.stderr)) == ["check", "make-numbers", "summarise"]


@pytest.mark.parametrize("switch", [["--no-cache"], ["--param", "cache=false"]], ids=["--no-cache", "--param cache=false"])
def test_the_cache_can_be_turned_off_and_fresh_outputs_are_still_recorded(tmp_path: Path, switch: list[str]):
    first, _ = run_all(tmp_path)
    assert first.exit_code == 0, first.output
    off, off_id = run_all(tmp_path, *switch)
    assert off.exit_code == 0, off.output
    assert sorted(ran(off.stderr)) == sorted(STEPS) and not cached(off.stderr), off.stderr
    after, _ = run_all(tmp_path)
    assert cached(after.stderr) == dict.fromkeys(STEPS, off_id), after.stderr


def test_a_bad_cache_switch_is_one_line(tmp_path: Path):
    result, _ = run_all(tmp_path, "--param", "cache=maybe")
    assert result.exit_code == 2 and "cache: 'maybe' is not a boolean" in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_an_entry_whose_artifact_is_missing_or_changed_is_ignored_with_a_warning(tmp_path: Path, damage: str):
    first, first_id = run_all(tmp_path)
    assert first.exit_code == 0, first.output
    artifact = Path(json.loads(output_of(tmp_path, first_id, "make-numbers"))["numbers"]["uri"])
    if damage == "missing":
        artifact.unlink()
    else:
        artifact.write_text("[0, 1, 2, 999]", encoding="utf-8")
    again, again_id = run_all(tmp_path)
    assert again.exit_code == 0, again.output
    reason = "is missing" if damage == "missing" else "fails its digest"
    warning = f"warning: make_numbers: cache entry from run {first_id} ignored: its artifact {artifact} {reason}"
    assert warning in again.stderr, again.stderr
    assert "make-numbers" in ran(again.stderr) and "summarise" in ran(again.stderr)  # summarise reads the new artifact
    numbers = json.loads(output_of(tmp_path, again_id, "make-numbers"))["numbers"]
    assert Path(numbers["uri"]).read_bytes() == b"[0.0, 1.5, 3.0, 4.5]"


def test_a_failed_step_never_enters_the_cache(tmp_path: Path):
    failed, _ = run_all(tmp_path, "--param", "fail=true")
    assert failed.exit_code != 0 and "step check" in failed.output
    assert not (tmp_path / "lake" / "cache" / "demo" / "check").exists()
    again, _ = run_all(tmp_path, "--param", "fail=true")
    assert again.exit_code != 0 and "check" not in cached(again.stderr) and "refused" in again.output
    assert set(cached(again.stderr)) == {"make-numbers", "summarise", "shout"}


def test_a_single_step_uses_the_same_cache_as_run_all(tmp_path: Path):
    """The step's own command (what a Kubeflow pod runs) finds the entry ``run-all`` recorded, by the same key."""
    first, first_id = run_all(tmp_path)
    assert first.exit_code == 0, first.output
    command = json.loads((tmp_path / "runs" / first_id / "state.json").read_text(encoding="utf-8"))["tasks"]["shout"]["command"]
    output = tmp_path / "pod-output"
    arguments = [*command[1:-2], "--hml-output", str(output)]
    env = {  # what the compiled spec sets in the step's container (tests/test_compiler.py), on this machine's platform
        "HML_HOME": str(tmp_path),
        "APP_WIDE": "yes",
        "GCP_PROJECT": "p",
        "GOOGLE_APPLICATION_CREDENTIALS": "/secret/gcp-credentials/user-gcp-sa.json",
        "HML_CACHE_ENV": "APP_WIDE,GCP_PROJECT,GOOGLE_APPLICATION_CREDENTIALS",
    }
    result = CliRunner().invoke(create_app().cli(), arguments, env=env)
    assert result.exit_code == 0, result.output
    assert f"shout: cached (from run {first_id})" in result.stderr
    assert output.read_text(encoding="utf-8") == "DONE DONE"
    elsewhere = CliRunner().invoke(create_app().cli(), arguments, env={**env, "GCP_PROJECT": "other"})
    assert elsewhere.exit_code == 0 and "cached" not in elsewhere.stderr  # a variable the spec sets is part of the key


def test_steps_declared_uncached_and_urls_are_never_keyed():
    @hml.op(cache=False)
    def publish(uri: str) -> str:
        return uri

    @hml.op()
    def fetch(source: str) -> str:
        return source

    assert step_key(pipeline="p", op=publish, raw={"uri": "x"}, env={}).digest is None
    url = step_key(pipeline="p", op=fetch, raw={"source": "https://example.org/rows.csv"}, env={})
    assert url.digest is None and "https://example.org/rows.csv" in url.reason
    assert (
        step_key(pipeline="p", op=fetch, raw={"source": "a"}, env={}).digest
        != step_key(pipeline="p", op=fetch, raw={"source": "b"}, env={}).digest
    )
    with pytest.raises(PipelineError, match="cache must be True or False, got 'no'"):
        hml.op(cache="no")(lambda: None)


def test_a_string_input_naming_a_file_is_keyed_by_its_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    @hml.op()
    def load(source: str) -> str:
        return source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.csv").write_text("a\n1\n", encoding="utf-8")
    before = step_key(pipeline="p", op=load, raw={"source": "rows.csv"}, env={})
    (tmp_path / "rows.csv").write_text("a\n2\n", encoding="utf-8")
    assert step_key(pipeline="p", op=load, raw={"source": "rows.csv"}, env={}).digest != before.digest


def test_the_cache_switch_takes_booleans_only():
    assert cache_enabled({}) and cache_enabled({"HML_CACHE": "true"}) and not cache_enabled({"HML_CACHE": "0"})
    with pytest.raises(ConfigError, match="HML_CACHE='sometimes' is not a boolean"):
        cache_enabled({"HML_CACHE": "sometimes"})


def test_an_unreadable_entry_is_ignored_with_a_warning(tmp_path: Path):
    @hml.op()
    def step(n: int) -> int:
        return n

    cache = StepCache(Lake(str(tmp_path)), "p")
    key = step_key(pipeline="p", op=step, raw={"n": "1"}, env={})
    Path(cache.entry_uri("step", key)).parent.mkdir(parents=True)
    Path(cache.entry_uri("step", key)).write_text("{not json", encoding="utf-8")
    warnings: list[str] = []
    assert cache.lookup("step", key, warn=warnings.append) is None
    assert len(warnings) == 1 and "cannot be read" in warnings[0]
    cache.record("step", key, run_id="r1", output="1")
    assert cache.lookup("step", key, warn=warnings.append) == Hit(run_id="r1", output="1")


# ------------------------------------------------------------------ a baked package, as a user runs it
def steps_of(stderr: str) -> tuple[dict[str, str], list[str]]:
    """``({step: run it came from}, [steps that ran])`` from run-all's progress lines."""
    done = re.findall(r"^\[\d/6\] ([a-z-]+): (?:ok in|cached \(from run (\S+)\))", stderr, re.M)
    return {step: source for step, source in done if source}, [step for step, source in done if not source]


def model_sha256(home: Path, run_id: str) -> str:
    return json.loads((home / "runs" / run_id / "outputs" / "train-model" / "output").read_text(encoding="utf-8"))["sha256"]


@pytest.mark.slow
def test_changing_only_training_reruns_training_and_what_follows_and_gives_the_same_model(cookies_session, tmp_path: Path):
    result = cookies_session.bake(extra_context={"project_name": "cache-model", "package_name": "cachey"})
    assert result.exit_code == 0, result.exception
    root = Path(result.project_path)
    pip_install_editable(root)
    data = root / "cachey" / "data" / "nass_cds.csv.gz"
    text = gzip.decompress(data.read_bytes()).decode()
    lines = text.splitlines(keepends=True)
    data.write_bytes(gzip.compress("".join(lines[:6001]).encode()))  # a smaller data set: quicker runs
    env = {"HML_HOME": str(tmp_path / "home")}
    home = tmp_path / "home"

    def run_all_baked(*args: str) -> tuple[dict[str, str], list[str], str]:
        done = run([str(BIN / "cachey"), "pipelines", "cachey_pipeline", "run-all", *args], cwd=root, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        return (*steps_of(done.stderr), done.stdout.strip().splitlines()[-1])

    _, first_ran, first_id = run_all_baked("--param", "n_estimators=20")
    assert len(first_ran) == 6
    reused, warm_ran, warm_id = run_all_baked("--param", "n_estimators=30")
    assert reused == dict.fromkeys(["extract", "analyze-features", "build-training-matrix"], first_id), reused
    assert warm_ran == ["train-model", "evaluate-model", "publish-model"]
    reused, full_ran, full_id = run_all_baked("--param", "n_estimators=30", "--no-cache")
    assert not reused and len(full_ran) == 6
    assert model_sha256(home, warm_id) == model_sha256(home, full_id)  # the cached inputs give the model a full run gives

    data.write_bytes(gzip.compress("".join(lines[:5001]).encode()))  # the data changed: everything reads it
    reused, ran_steps, _ = run_all_baked("--param", "n_estimators=30")
    assert not reused and len(ran_steps) == 6, ran_steps

    shared = root / "cachey" / "shared.py"
    source = shared.read_text(encoding="utf-8")
    frontal = re.compile(r'^    "frontal",[^\n]*\n', re.M)  # one of FEATURES_NUMERIC in the default bake
    assert frontal.search(source), "shared.py lists no frontal feature"
    shared.write_text(frontal.sub("", source, count=1), encoding="utf-8")
    reused, ran_steps, _ = run_all_baked("--param", "n_estimators=30")
    assert not reused and len(ran_steps) == 6, ran_steps  # a feature list shapes every step

    reused, ran_steps, _ = run_all_baked("--param", "n_estimators=30")
    assert len(reused) == 5 and ran_steps == ["publish-model"]  # publishing is never cached
    pipeline = root / "cachey" / "pipeline.py"
    code = pipeline.read_text(encoding="utf-8")
    pipeline.write_text(code.replace("    model.fit(", "    print('training', file=sys.stderr)\n    model.fit(", 1), encoding="utf-8")
    reused, ran_steps, _ = run_all_baked("--param", "n_estimators=30")
    assert {"train-model", "evaluate-model", "publish-model"} <= set(ran_steps), ran_steps


#: what the tiered demo's configurator gives every step; a module constant, as a baked start.py reads its settings at import
SECRET = "db-creds"


def tiered_app(*, extra: bool = False) -> hml.HmlApp:
    """The demo app with one more configurator: ``TIER`` from the environment, the secret of :data:`SECRET`; ``extra`` adds a variable."""
    app = create_app()

    @hml.deploy_op(app.pipelines)
    def tier(op):
        op.with_secret_env(SECRET, {"token": "TOKEN"})
        if extra:
            op.with_env("EXTRA", "1")
        return op.with_env("TIER", os.environ.get("HMLDEMO_TIER", "small"))

    return app


class Compiles:
    """Counts the compiles run-all does (kfp's compiler called through hmlcore's ``compile_pipeline``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from hmlcore.pipelines import runner

        self.count = 0
        real = runner.compile_pipeline

        def counted(*args, **kwargs):
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(runner, "compile_pipeline", counted)

    def taken(self) -> int:
        count, self.count = self.count, 0
        return count


def run_tiered(home: Path, cache: Path, app: hml.HmlApp | None = None, **env: str):
    result = CliRunner().invoke(
        (app or tiered_app()).cli(), ["pipelines", "demo", "run-all"], env={"HML_HOME": str(home), "HML_CACHE_DIR": str(cache), **env}
    )
    assert result.exit_code == 0, result.output
    return result


def test_run_all_compiles_again_only_when_what_the_spec_is_made_of_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from hmlcore.pipelines.compiler import compile_pipeline

    compiles, cache = Compiles(monkeypatch), tmp_path / "cache"
    kept = cache / "compiled" / "demo"
    run_tiered(tmp_path / "a", cache)
    assert compiles.taken() == 1 and len(list(kept.glob("*.json"))) == 1
    entry = json.loads(next(kept.glob("*.json")).read_text(encoding="utf-8"))
    assert entry["spec"] == compile_pipeline(tiered_app().pipelines["demo"]).spec
    # the same code and settings: reused, whatever else the environment holds, in a fresh HML_HOME too
    run_tiered(tmp_path / "a", cache)
    run_tiered(tmp_path / "b", cache, OLDPWD="/elsewhere", SHLVL="7", HMLDEMO_UNRELATED="x")
    assert compiles.taken() == 0 and len(list(kept.glob("*.json"))) == 1
    # a variable a configurator reads changes the steps' environment: compiled again, and the steps get the new value
    result = run_tiered(tmp_path / "a", cache, HMLDEMO_TIER="large")
    assert compiles.taken() == 1 and len(list(kept.glob("*.json"))) == 2
    specs = [json.loads(path.read_text(encoding="utf-8"))["spec"] for path in kept.glob("*.json")]
    tiers = {
        e["value"]
        for spec in specs
        for x in spec["deploymentSpec"]["executors"].values()
        for e in x["container"]["env"]
        if e["name"] == "TIER"
    }
    assert tiers == {"small", "large"}, result.stderr
    run_tiered(tmp_path / "a", cache, HMLDEMO_TIER="large")
    assert compiles.taken() == 0
    # a module setting (read at import in a baked start.py) and the configurator's code: compiled again
    monkeypatch.setattr(sys.modules[__name__], "SECRET", "other-creds")
    run_tiered(tmp_path / "a", cache)
    assert compiles.taken() == 1
    run_tiered(tmp_path / "a", cache, app=tiered_app(extra=True))
    assert compiles.taken() == 1 and len(list(kept.glob("*.json"))) == 4


def test_a_damaged_kept_spec_is_reported_and_compiled_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from hmlcore.pipelines.compiler import compile_pipeline

    compiles, cache = Compiles(monkeypatch), tmp_path / "cache"
    run_tiered(tmp_path, cache)
    path = next((cache / "compiled" / "demo").glob("*.json"))
    good = json.loads(path.read_text(encoding="utf-8"))
    tampered = json.loads(json.dumps(good))
    tampered["spec"]["root"]["dag"]["tasks"].pop("shout")  # valid JSON, a wrong spec
    for damaged in ("{not json", json.dumps(tampered), json.dumps({**good, "key": "0" * 64})):
        path.write_text(damaged, encoding="utf-8")
        compiles.taken()
        result = run_tiered(tmp_path, cache)
        assert compiles.taken() == 1
        warnings = [line for line in result.stderr.splitlines() if "kept compiled spec" in line]
        assert len(warnings) == 1 and str(path) in warnings[0] and "compiling again" in warnings[0], result.stderr
        assert json.loads(path.read_text(encoding="utf-8"))["spec"] == compile_pipeline(tiered_app().pipelines["demo"]).spec
    assert len(ran(result.stderr) + list(cached(result.stderr))) == 4  # every step ran or came from the step cache


def test_a_pipeline_that_reaches_into_kfp_task_is_compiled_every_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    compiles, cache = Compiles(monkeypatch), tmp_path / "cache"
    app = create_app()

    @hml.deploy_op(app.pipelines)
    def direct(op):
        op.kfp_task.set_env_variable("SET_BY_KFP", "1")  # what hmlcore cannot note in its dry run

    run_tiered(tmp_path, cache, app=app)
    run_tiered(tmp_path, cache, app=app)
    assert compiles.taken() == 2 and not list(cache.glob("compiled/demo/*.json"))


def one_step_app(step) -> hml.HmlApp:
    app = hml.HmlApp(name="one-step", package_entrypoint="onestep", image_url="registry.example/one:1")

    @hml.pipeline(app.pipelines)
    def single(text: str = "hi"):
        step(text=text)

    return app


def test_the_spec_key_follows_a_steps_signature_not_its_body():
    from hmlcore.pipelines.dry_run import spec_key

    def louder(text: str, times: int = 2) -> str:
        return text.upper() * times

    def quieter(text: str, times: int = 2) -> str:  # another body, the same signature
        return text.lower() * times

    def more(text: str, times: int = 3) -> str:  # another default: the component's input changes
        return text.upper() * times

    keys = {
        name: spec_key(one_step_app(hml.op(name="shout")(func)).pipelines["single"])
        for name, func in [("louder", louder), ("quieter", quieter), ("more", more)]
    }
    assert None not in keys.values()
    assert keys["louder"] == keys["quieter"] != keys["more"]


def _source_app():
    """An app whose one step counts the rows of ``source`` (a file or a warehouse table), declared as its source."""

    @hml.op(sources=["source"])
    def count_rows(ctx: hml.OpContext, source: str = "rows.csv") -> int:
        return len(hml.read_rows(source, warehouse=ctx.warehouse, lake=ctx.lake).frame)

    @hml.pipeline(cron=None)
    def counting(source: str = "rows.csv"):
        count_rows(source=source)

    app = hml.HmlApp(name="counting", package_entrypoint="counting")
    app.pipelines.register(counting)
    return app


def _count_run(home: Path, *args: str):
    result = CliRunner().invoke(_source_app().cli(), ["pipelines", "counting", "run-all", *args], env={"HML_HOME": str(home)})
    assert result.exit_code == 0, result.output
    run_id = result.stdout.strip().splitlines()[-1]
    return result, int(output_of(home, run_id, "count-rows"))


def test_a_source_naming_a_table_is_read_afresh_each_run_and_a_file_is_keyed_by_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The README's promise "each run reads the source afresh": a table can change under the same name, so it is never cached."""
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    pd = pytest.importorskip("pandas")
    (tmp_path / "rows.csv").write_text("a\n1\n2\n", encoding="utf-8")
    first, count = _count_run(home)
    assert count == 2 and not cached(first.stderr)
    again, count = _count_run(home)
    assert count == 2 and "count-rows" in cached(again.stderr), again.stderr  # the same file: reused

    def load_table(rows: int) -> None:
        warehouse = hml.HmlApp(name="counting", package_entrypoint="counting").warehouse
        try:
            warehouse.load_dataframe(pd.DataFrame({"a": range(rows)}), "visits")
        finally:
            warehouse.close()

    monkeypatch.setenv("HML_HOME", str(home))
    load_table(3)
    first, count = _count_run(home, "--param", "source=visits")
    assert count == 3 and not cached(first.stderr), first.stderr
    load_table(5)  # the same table name, new rows
    again, count = _count_run(home, "--param", "source=visits")
    assert count == 5 and not cached(again.stderr), again.stderr


def test_sources_must_name_str_inputs():
    with pytest.raises(PipelineError, match=r"op load: sources names 'path', which is not one of its str inputs \(source\)"):

        @hml.op(sources=["path"])
        def load(source: str = "a", rows: int = 1) -> int:
            return rows

    with pytest.raises(PipelineError, match="sources must be a list of input names, got 'source'"):
        hml.op(sources="source")(lambda source="": 0)
    table = step_key(pipeline="p", op=hml.op(sources=["source"])(_count), raw={"source": "visits"}, env={})
    assert table.digest is None and "input source names 'visits', a table or query" in table.reason


def _count(source: str = "rows.csv") -> int:
    return 0
