"""The HTML pages hmlcore writes (the evaluation report, the drift report), rendered from ``templates/``."""

from __future__ import annotations

from importlib import resources
from typing import Any

__all__ = ["render_page"]


def render_page(template_name: str, /, **context: Any) -> str:
    """Render ``templates/<template_name>`` with ``context``: every value HTML-escaped, an unknown name an error."""
    import jinja2  # installed with Flask; only report commands need it

    template = resources.files("hmlcore").joinpath("templates", template_name).read_text(encoding="utf-8")
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(template).render(**context)
