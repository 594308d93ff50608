"""Jinja filters the template renders answers with, so that each answer stays data in the file it reaches.

cookiecutter loads this module through ``_extensions`` in cookiecutter.json, with the template folder on
``sys.path`` (cruft too, when it bakes or updates).
Jinja's own ``tojson`` is not enough: it writes non-ASCII characters as ``\\uXXXX`` escapes, and
an emoji becomes a UTF-16 surrogate pair that TOML refuses and Python keeps as two lone surrogates.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jinja2 import Environment
from jinja2.ext import Extension

# TOML basic strings allow every character but these: the quote, the backslash and the control characters
_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(value: object) -> str:
    """``value`` as a TOML basic string, quotes included, with its Unicode characters written as they are.

    Args:
        value: The answer; anything but a string is converted with ``str``.

    Returns:
        A TOML string that parses back to ``str(value)``.
    """
    out = []
    for char in str(value):
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def template_folder(repo_dir: str = "") -> str:
    """The absolute path of the template being rendered.

    Args:
        repo_dir: cookiecutter's ``_repo_dir`` when it is known (cruft does not set it); a relative one is ignored,
            as rendering runs in another folder than the one it is relative to.

    Returns:
        ``repo_dir`` if it is an absolute folder holding this template, else the folder of this module.
    """
    if repo_dir and os.path.isabs(repo_dir) and os.path.isfile(os.path.join(repo_dir, "cookiecutter.json")):
        return repo_dir
    return str(Path(__file__).resolve().parent)


def hmlcore_version(repo_dir: str = "") -> str:
    """The version of the hmlcore beside the template (``hmlcore/_version.py``), read, not imported."""
    text = (Path(template_folder(repo_dir)) / "hmlcore" / "_version.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([0-9A-Za-z.+-]+)"$', text, flags=re.M)
    if found is None:
        raise ValueError("hmlcore/_version.py names no __version__")
    return found.group(1)


class AnswerFilters(Extension):
    """Adds the ``toml`` filter (``name = {{ cookiecutter.project_name | toml }}``) and the globals
    ``template_folder()`` and ``hmlcore_version()`` (the bake's hmlcore, which the package pins)."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["toml"] = toml_string
        environment.globals["template_folder"] = template_folder
        environment.globals["hmlcore_version"] = hmlcore_version
