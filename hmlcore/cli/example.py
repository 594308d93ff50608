"""``<entrypoint> inference example``: a valid request for the model in service, made from what it learnt.

The row is the model's typical training row (each numeric feature's median, each categorical one's most
common value: :func:`hmlcore.serving.reload.smoke_record`, the row a server predicts before it swaps a
model in), so the example always fits the model in service, whatever data it was trained on::

    crashed inference example                 {"age": 34.0, "seatbelt": "belted", ...}
    crashed inference example --query         age=34.0&seatbelt=belted&...
    curl "http://127.0.0.1:8000/predict?$(crashed inference example --query)"
"""

from __future__ import annotations

import json
import urllib.parse

import click

from hmlcore.cli._common import CliApp, guard, registered_model
from hmlcore.serving.reload import smoke_record

__all__ = ["add_example_command"]


def add_example_command(group: click.Group, app: CliApp) -> click.Group:
    """Add ``example`` to the ``inference`` group; return the group."""

    @group.command("example")
    @click.option("--query", "as_query", is_flag=True, help="Print a query string for GET /predict instead of a JSON object.")
    @click.option("--model", "model", default=None, help="The registered model (default: the only one).")
    @guard
    def example_command(as_query: bool, model: str | None) -> None:
        """Print a valid request for the model in service: its typical training row, as JSON (POST /predict) or a query string."""
        record = smoke_record(registered_model(app, model).load())
        if as_query:
            click.echo(urllib.parse.urlencode({k: "" if v is None else v for k, v in record.items()}))
        else:
            click.echo(json.dumps(record))

    return group
