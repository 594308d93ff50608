"""hmlcore's environment variables (hmlcore._env): each read when asked, a bad value a one-line error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hmlcore import _env
from hmlcore.errors import ConfigError

from .pipeline_demo import create_app

#: a value each checked variable refuses
BAD = {
    bool: "maybe",
    int: "lots",
}
CHECKED = [v for v in _env.VARIABLES.values() if v.parse is not _env._text and v.name != "HML_DEBUG"]


@pytest.mark.parametrize("variable", CHECKED, ids=[v.name for v in CHECKED])
def test_a_bad_value_is_one_line_naming_the_variable_and_the_value(variable: _env.Variable, monkeypatch: pytest.MonkeyPatch):
    bad = BAD.get(type(variable.default), "shouting")
    monkeypatch.setenv(variable.name, bad)
    with pytest.raises(ConfigError) as raised:
        variable.get()
    message = str(raised.value)
    assert message.startswith(f"{variable.name}='{bad}' is not ") and "\n" not in message, message


def test_a_variable_is_read_when_asked_not_when_imported(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("HML_WORKERS", raising=False)
    assert _env.WORKERS.get() == 0  # unset: the default
    monkeypatch.setenv("HML_WORKERS", " 3 ")
    assert _env.WORKERS.get() == 3
    monkeypatch.setenv("HML_WORKERS", "")
    assert _env.WORKERS.get() == 0  # blank: the default
    assert _env.WORKERS.get({"HML_WORKERS": "5"}) == 5  # or from a given mapping (a step's environment, the app's)


@pytest.mark.parametrize(("text", "expected"), [("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("off", False)])
def test_booleans_take_the_usual_words(text: str, expected: bool):
    assert _env.ALLOW_PICKLE.get({"HML_ALLOW_PICKLE": text}) is expected


def test_debug_is_on_when_set_to_anything_but_a_false_word():
    assert _env.DEBUG.get({"HML_DEBUG": "2"}) and not _env.DEBUG.get({"HML_DEBUG": "no"}) and not _env.DEBUG.get({})


def test_every_variable_is_named_once_with_a_line_saying_what_it_sets():
    assert len(_env.VARIABLES) == len({v.name for v in _env.VARIABLES.values()})
    for variable in _env.VARIABLES.values():
        assert variable.doc and "\n" not in variable.doc, variable


def test_the_cache_folder_follows_hml_cache_dir_then_xdg_then_home(tmp_path: Path):
    assert _env.cache_dir({"HML_CACHE_DIR": str(tmp_path / "c"), "XDG_CACHE_HOME": "/x"}) == str(tmp_path / "c")
    assert _env.cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "hml")
    assert _env.cache_dir({"XDG_CACHE_HOME": "relative"}).endswith(str(Path(".cache") / "hml"))  # XDG: a relative path is ignored


def test_a_step_run_with_a_bad_variable_exits_with_one_line_naming_it(tmp_path: Path):
    result = CliRunner().invoke(
        create_app().cli(), ["pipelines", "demo", "run", "shout", "--text", "hi"], env={"HML_HOME": str(tmp_path), "HML_CACHE": "maybe"}
    )
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Error: HML_CACHE='maybe' is not a boolean: set it to true or false (" + _env.CACHE.doc + ")"], result.output
