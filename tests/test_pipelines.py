"""``@hml.pipeline``: registration, tracing, parameters and the cron schedule."""

from __future__ import annotations

import json

import pytest

from hmlcore import hml
from hmlcore.pipelines.dag import normalise_cron

from .pipeline_demo import create_app


@pytest.mark.parametrize(
    ("cron", "six"),
    [
        ("0 0 * * *", "0 0 0 * * *"),
        ("*/15 9-17 * * 1-5", "0 */15 9-17 * * 1-5"),
        ("0 6 1,15 JAN-MAR MON", "0 0 6 1,15 JAN-MAR MON"),
        ("0 0 ? * SUN", "0 0 0 ? * SUN"),
        ("30 0 0 * * *", "30 0 0 * * *"),
        ("@daily", "0 0 0 * * *"),
    ],
)
def test_cron_is_converted_to_kubeflows_six_fields(cron: str, six: str):
    assert normalise_cron(cron) == six


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 0 * *", "4 fields"),
        ("61 * * * *", "minute '61'"),
        ("0 24 * * *", "hour '24'"),
        ("0 0 1 13 *", "month '13'"),
        ("0 0 * * 8", "day of week '8'"),
        ("*/0 * * * *", "bad step"),
        ("5-2 * * * *", "bad range"),
        ("every day", "2 fields"),
        ("? * * * *", "minute '\\?'"),
    ],
)
def test_invalid_cron_is_refused_naming_the_field(cron: str, message: str):
    with pytest.raises(hml.ConfigError, match=message):
        normalise_cron(cron)


def test_invalid_cron_is_refused_when_the_pipeline_is_declared():
    app = hml.HmlApp(name="x")

    @hml.op()
    def step() -> None:
        pass

    with pytest.raises(hml.ConfigError, match="invalid cron '0 0 0 0 0'"):

        @hml.pipeline(app.pipelines, cron="0 0 0 0 0")
        def p():
            step()


def test_pipeline_registers_params_experiment_and_steps():
    app = create_app()
    demo = app.pipelines["demo"]
    assert [(p.name, p.type, p.default) for p in demo.params] == [("count", int, 4), ("weights", list, [1, 2]), ("fail", bool, False)]
    assert demo.cron == "0 30 2 * * 1-5" and demo.experiment == "demos"
    assert [o.name for o in demo.ops] == ["make_numbers", "summarise", "shout", "check"]
    assert app.pipelines["tiny"].experiment == "tiny" and app.pipelines["tiny"].cron is None
    assert demo.get_op("make-numbers").name == "make_numbers"
    with pytest.raises(hml.PipelineError, match="no step 'nope'; its steps are: make_numbers"):
        demo.get_op("nope")
    with pytest.raises(hml.PipelineError, match="no pipeline 'other'; known pipelines: demo, tiny"):
        app.pipelines["other"]


def test_pipeline_mistakes_are_named():
    app = hml.HmlApp(name="x")

    @hml.op()
    def step(n: int) -> int:
        return n

    @hml.pipeline(app.pipelines)
    def wrong_input():
        step(m=1)

    with pytest.raises(hml.PipelineError, match="op step has no input 'm'"):
        wrong_input.trace()

    @hml.pipeline(app.pipelines)
    def empty():
        pass

    with pytest.raises(hml.PipelineError, match="calls no @hml.op step"):
        empty.trace()
    with pytest.raises(hml.PipelineError, match="registered twice"):

        @hml.pipeline(app.pipelines)
        def empty():  # noqa: F811
            pass

    with pytest.raises(hml.ConfigError, match="takes app.pipelines or nothing"):
        hml.pipeline(app)  # type: ignore[arg-type]


@hml.op()
def _greet(name: str = "world") -> str:
    return f"hello {name}"


@hml.pipeline(cron="0 0 * * *", experiment="greetings")
def nightly(name: str = "world"):
    """Greet once a night."""
    _greet(name=name)


def test_a_pipeline_declared_beside_its_steps_runs_in_each_app_that_registers_it(tmp_path):
    """pipeline.py declares the DAG with no app; start.py registers it: each app gets its own copy, the declared one stays free."""
    assert isinstance(nightly, hml.HmlPipeline) and nightly.cron == "0 0 0 * * *" and nightly.experiment == "greetings"
    with pytest.raises(hml.PipelineError, match=r"declared but no app runs it: register it with app.pipelines.register\(nightly\)"):
        nightly.owner  # noqa: B018
    first, second = hml.HmlApp(name="one", image_url="reg/one:1"), hml.HmlApp(name="two", image_url="reg/two:2")
    registered = first.pipelines.register(nightly)
    assert registered is first.pipelines["nightly"] and registered.owner is first.pipelines
    assert hml.pipeline(second.pipelines)(nightly.func).owner is second.pipelines  # the seed's form takes the same function
    assert not nightly.registered and registered.registered and [o.name for o in registered.ops] == ["_greet"]

    from hmlcore.pipelines.compiler import compile_pipeline

    specs = [compile_pipeline(app.pipelines["nightly"]).spec for app in (first, second)]
    images = [json.dumps(spec["deploymentSpec"]["executors"]) for spec in specs]
    assert "reg/one:1" in images[0] and "reg/two:2" in images[1] and "reg/one:1" not in images[1]


def test_registering_what_is_not_a_pipeline_is_refused():
    app = hml.HmlApp(name="x")
    with pytest.raises(hml.ConfigError, match="takes a pipeline declared with @hml.pipeline, got function"):
        app.pipelines.register(nightly.func)  # type: ignore[arg-type]
    app.pipelines.register(nightly)
    with pytest.raises(hml.PipelineError, match="registered twice"):
        app.pipelines.register(nightly)
