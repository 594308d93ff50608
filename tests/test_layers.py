"""The README's newcomer's map of hmlcore says what import-linter's contracts check, and imports wait only for a reason."""

from __future__ import annotations

import ast
import io
import re
import tokenize
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


def late_imports() -> list[tuple[str, int, str]]:
    """Every import of an hmlcore module inside a function: ``(file, line, the comment on its lines or "")``."""
    found = []
    for path in sorted((ROOT / "hmlcore").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        comments = {t.start[0]: t.string for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT}
        for function in ast.walk(ast.parse(text)):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                internal = (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("hmlcore"))) or (
                    isinstance(node, ast.Import) and any(alias.name.startswith("hmlcore") for alias in node.names)
                )
                if internal:
                    said = " ".join(comments.get(line, "") for line in range(node.lineno, (node.end_lineno or node.lineno) + 1))
                    found.append((str(path.relative_to(ROOT)), node.lineno, said))
    return found


def test_an_hmlcore_module_imported_inside_a_function_says_why_it_waits_and_never_to_dodge_a_cycle():
    """The layers and the acyclic contracts count every import; one that waits must wait for a reason a reader can check."""
    found = late_imports()
    assert found, "the scan found no import inside a function: it no longer sees them"
    silent = [f"{path}:{line}" for path, line, said in found if not said.strip("# ")]
    assert not silent, f"imports inside functions with no comment saying why they wait: {silent}"
    dodging = [f"{path}:{line}: {said}" for path, line, said in found if re.search(r"\bcycl|\bcircular", said, re.I)]
    assert not dodging, f"imports that wait only to dodge a cycle: {dodging}"
