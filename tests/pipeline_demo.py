"""A small package-like app for the pipeline tests: every parameter type, outputs, ``.after()``, configurators.

Tests import :func:`create_app`; the parity test runs :func:`main` as the console script ``hmldemo``
(see :func:`write_entrypoint`), so compiled command lines execute exactly as a container would run them.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

from hmlcore import hml

ENTRYPOINT = "hmldemo"
ROOT = Path(__file__).resolve().parent.parent


@hml.op()
def make_numbers(ctx: hml.OpContext, count: int, scale: float = 1.5, label: str = 'it\'s "quoted" & spaced') -> dict:
    """Produce ``count`` scaled numbers and save them as an artifact."""
    values = [round(i * scale, 6) for i in range(count)]
    artifact = ctx.save_artifact("numbers.json", json.dumps(values).encode())
    return {"label": label, "count": count, "numbers": artifact}


@hml.op()
def summarise(ctx: hml.OpContext, numbers: dict, weights: list, options: dict = {"round": 2}, verbose: bool = False) -> dict:  # noqa: B006
    """Weight the numbers and summarise them."""
    values = json.loads(ctx.load_artifact(numbers["numbers"]))
    weighted = [v * weights[i % len(weights)] for i, v in enumerate(values)]
    summary = {"label": numbers["label"], "total": round(sum(weighted), options["round"]), "verbose": verbose}
    if verbose:
        summary["values"] = weighted
    return summary


@hml.op()
def shout(text: str, times: int = 2) -> str:
    """Repeat ``text`` in capitals."""
    return " ".join([text.upper()] * times)


@hml.op()
def check(ctx: hml.OpContext, summary: dict, fail: bool = False) -> None:
    """Fail on purpose when asked; record that it ran otherwise."""
    if fail or os.environ.get("HMLDEMO_FAIL") == ctx.step:
        raise hml.PipelineError(f"check refused summary {summary['label']!r}")
    ctx.lake.write_bytes(f"runs/{ctx.pipeline}/{ctx.run_id}/check/ok", b"ok")


@hml.op()
def count_up(start: int) -> int:
    """Return ``start + 1``."""
    return start + 1


def create_app() -> hml.HmlApp:
    """The demo app: pipeline ``demo`` (every feature) and ``tiny`` (one step)."""
    app = hml.HmlApp(name="hml-demo", cluster_platform="s3", package_entrypoint=ENTRYPOINT, image_url="registry.example/hml-demo:abc123")
    app.with_env("APP_WIDE", "yes")

    @hml.pipeline(app.pipelines, cron="30 2 * * 1-5", experiment="demos")
    def demo(count: int = 4, weights: list = [1, 2], fail: bool = False):  # noqa: B006
        """Numbers in, a summary out."""
        numbers = make_numbers(count=count)
        summary = summarise(numbers=numbers.output, weights=weights, verbose=True)
        loud = shout(text="done")
        check(summary=summary.output, fail=fail).after(loud)

    @hml.pipeline(app.pipelines)
    def tiny(start: int = 1):
        """Two steps counting up."""
        first = count_up(start=start)
        count_up(start=first.output)

    @hml.deploy_op(app.pipelines)
    def configure(op):
        return (
            op.with_gcp_auth("svc")
            .with_env("GCP_PROJECT", "p")
            .with_secret_env("db-creds", {"password": "DB_PASSWORD"})
            .with_empty_dir("scratch", "/scratch", size_limit="1Gi")
            .with_resources(cpu_request="500m", cpu_limit="2", memory_request="1Gi", memory_limit="2Gi")
            .with_retries(2)
            .with_node_selector("pool", "training")
            .with_toleration("dedicated", "ml")
        )

    return app


def main() -> None:
    """The ``hmldemo`` console script."""
    create_app().start()


def write_entrypoint(folder: Path) -> Path:
    """Write an executable ``hmldemo`` script into ``folder`` that runs :func:`main` with this interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / ENTRYPOINT
    script.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom tests.pipeline_demo import main\nmain()\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script
