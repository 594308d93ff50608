"""A warm interpreter for ``run-all``: the libraries imported once, each run forked from it, like Rails' Spring.

A data scientist runs ``run-all`` dozens of times a day, and a fresh interpreter spends about a second of
each run importing numpy, pandas, scikit-learn and XGBoost before any step starts. The first ``run-all``
runs as before and, when it ends, starts a background server (:mod:`~hmlcore._warm.server`) that imports the
third-party and standard-library modules that run imported. Every later ``run-all`` of the same interpreter
and installed packages (:mod:`~hmlcore._warm.place`) sends its command line, working folder, environment and
terminal to that server (:mod:`~hmlcore._warm.client`), which forks a child that becomes the command
(:mod:`~hmlcore._warm.child`): hmlcore and the package are imported afresh in every child, so an edit is always
seen. ``HML_WARM=false`` turns it off; it is off when ``CI`` is set, and on Linux only.
"""

from __future__ import annotations

from hmlcore._warm.client import run_warm

__all__ = ["run_warm"]
