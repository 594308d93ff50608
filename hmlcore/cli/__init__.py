"""The package's command line: the one layer that wires pipelines, serving, deploy and models together.

- :mod:`~hmlcore.cli.main`: the root group (:func:`build_cli`); :mod:`~hmlcore.cli._common`: the app as
  the commands see it (the ``CliApp`` Protocol), the one-line errors and ``guard``.
- :mod:`~hmlcore.cli.pipelines`, :mod:`~hmlcore.cli.inference` (with :mod:`~hmlcore.cli.k8s`),
  :mod:`~hmlcore.cli.models`, :mod:`~hmlcore.cli.monitor`: the command groups.
"""

from __future__ import annotations

from hmlcore.cli.main import build_cli

__all__ = ["build_cli"]
