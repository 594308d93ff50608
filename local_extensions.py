"""Jinja filters the template renders answers with, so that each answer stays data in the file it reaches.

cookiecutter loads this module through ``_extensions`` in cookiecutter.json, with the template folder on
``sys.path``. Jinja's own ``tojson`` is not enough: it writes non-ASCII characters as ``\\uXXXX`` escapes, and
an emoji becomes a UTF-16 surrogate pair that TOML refuses and Python keeps as two lone surrogates.
"""

from __future__ import annotations

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


class AnswerFilters(Extension):
    """Adds the ``toml`` filter: ``name = {{ cookiecutter.project_name | toml }}``."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters["toml"] = toml_string
