"""The README's newcomer's map of hmlcore says what import-linter's contracts in pyproject.toml check."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def contracts() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def layers() -> list[list[str]]:
    (contract,) = [c for c in contracts()["contracts"] if c["type"] == "layers"]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def newcomers_map() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## A newcomer's map of hmlcore")
    return readme[start : readme.index("\n## ", start + 1)]


def test_the_maps_diagram_is_the_layers_contract_top_to_bottom():
    (diagram,) = re.findall(r"```text\n(.*?)```", newcomers_map(), flags=re.S)
    drawn = [[name.strip() for name in line.split("|")] for line in diagram.splitlines() if line.strip() not in ("", "▼")]
    assert drawn == layers()


def test_the_map_has_a_paragraph_naming_each_part_of_the_contracts():
    text = newcomers_map()
    for name in (name for layer in layers() for name in layer):
        shown = f"**`{name}/`**" if (ROOT / "hmlcore" / name).is_dir() else f"**`{name}.py`**"
        assert shown in text, f"the newcomer's map does not describe {shown}"


def test_type_checking_imports_count_in_the_contracts():
    assert contracts()["exclude_type_checking_imports"] is False
