"""Bake the default package into a scratch folder for the benchmarks (importable without installing)."""

from __future__ import annotations

import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bake_default() -> Path:
    """The default answers baked into a fresh temporary folder; returns the project folder."""
    from cookiecutter.main import cookiecutter

    out = Path(tempfile.mkdtemp(prefix="hml-bench-"))
    return Path(cookiecutter(str(ROOT), no_input=True, output_dir=str(out)))
