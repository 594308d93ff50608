"""The op factory: typed functions become steps; values cross the command line the way Kubeflow passes them."""

from __future__ import annotations

import pytest

from hmlcore import hml
from hmlcore.pipelines.context import OpContext
from hmlcore.pipelines.values import parse_value, render_value


def test_op_params_and_return_type_come_from_the_annotations():
    @hml.op()
    def step(ctx: OpContext, table: str, n: int = 3, share: float = 0.5, flag: bool = False, cols: list = [], opts: dict = {}) -> dict:  # noqa: B006
        return {}

    assert [(p.name, p.type, p.required) for p in step.params] == [
        ("table", str, True),
        ("n", int, False),
        ("share", float, False),
        ("flag", bool, False),
        ("cols", list, False),
        ("opts", dict, False),
    ]
    assert step.context_param == "ctx" and step.return_type is dict
    assert [p.option for p in step.params][:2] == ["--table", "--n"]


def test_bare_decorator_and_plain_call_outside_a_pipeline():
    @hml.op
    def double(x: int) -> int:
        return 2 * x

    assert double(x=4) == 8 and double.name == "double"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def f(x): pass", "parameter 'x' needs a type annotation"),
        ("def f(x: set): pass", "parameter 'x' needs a type annotation"),
        ("def f(x: str = None): pass", "defaults to None"),
        ("def f(*xs: int): pass", r"\*args"),
        ("def f() -> set: pass", "return type must be"),
    ],
)
def test_bad_signatures_are_refused_with_the_parameter_named(source: str, message: str):
    namespace: dict = {}
    exec(source, namespace)
    with pytest.raises(hml.PipelineError, match=message):
        hml.op()(namespace["f"])


def test_a_step_returning_the_wrong_type_is_an_error_naming_it():
    @hml.op()
    def bad() -> dict:
        return ["not", "a", "dict"]  # type: ignore[return-value]

    app = hml.HmlApp(name="x")
    context = OpContext(store=app.store, models=app.models, pipeline="p", step="bad", run_id="r")
    with pytest.raises(hml.PipelineError, match="step bad returned list .* declared to return dict"):
        bad.invoke(context, {})


def test_artifact_uri_is_the_step_folder_save_artifact_writes_to(tmp_path, monkeypatch):
    monkeypatch.setenv("HML_HOME", str(tmp_path))
    app = hml.HmlApp(name="x")
    context = OpContext(store=app.store, models=app.models, pipeline="p", step="extract", run_id="r1")
    saved = context.save_artifact("rows.bin", b"abc")
    assert saved["uri"] == context.artifact_uri("rows.bin")
    assert context.lake.contains(saved["uri"]) and saved["uri"].endswith("/runs/p/r1/extract/rows.bin")
    other_step = OpContext(store=app.store, models=app.models, pipeline="p", step="train", run_id="r1")
    assert other_step.artifact_uri("rows.bin") != saved["uri"]


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        (True, bool, "true"),
        (False, bool, "false"),
        (4.0, int, "4"),
        (0.25, float, "0.25"),
        ('it\'s "x" & y', str, 'it\'s "x" & y'),
        ([1.0, 2.5, "a"], list, '[1,2.5,"a"]'),
        ({"a": {"b": [3.0]}, "ok": True}, dict, '{"a":{"b":[3]},"ok":true}'),
    ],
)
def test_values_render_as_kubeflow_renders_them_and_parse_back(value, kind, text):
    assert render_value(value, kind) == text
    parsed = parse_value(text, kind)
    assert render_value(parsed, kind) == text


@pytest.mark.parametrize(
    ("text", "kind", "message"),
    [("maybe", bool, "not a boolean"), ("2.5", int, "not a whole number"), ("[1,", list, "not valid JSON"), ("[1]", dict, "JSON object")],
)
def test_bad_command_line_values_name_the_value(text, kind, message):
    with pytest.raises(ValueError, match=message):
        parse_value(text, kind)
