"""``spec_key``: a digest of what a pipeline's compiled spec is made from, found by a dry run without kfp.

``run-all`` keeps the compiled spec in the per-user cache folder under this key (:mod:`hmlcore.pipelines.cache`),
so a pipeline is compiled again only when its spec would change.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from typing import TYPE_CHECKING, Any

from hmlcore.pipelines.cache import code_digest
from hmlcore.pipelines.ops import building
from hmlcore.pipelines.tasks import KfpBuilder, Stand, described

if TYPE_CHECKING:
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["spec_key"]


def spec_key(pipeline: HmlPipeline, *, image: str | None = None) -> str | None:
    """A digest of everything ``pipeline``'s compiled spec is made from, found without kfp; ``None`` if it cannot be told.

    A dry run calls the pipeline function (its parameters and loop items as stand-ins) and every
    ``@hml.deploy_op`` configurator with tasks that note each ``with_*`` call instead of applying it. The
    digest holds those notes in order (every step, its arguments, each environment variable, secret,
    volume and resource it is given), each step's component, the pipeline's name, description and
    parameters, the app's settings the compile reads, hmlcore's code, the installed distributions and
    kfp's version. A setting read from the environment or a file (at import, in a configurator) reaches
    the spec only through these calls, so it changes the key exactly when it changes the spec; an
    unrelated variable, or an edit inside a step's body, does not.

    Returns ``None`` (compile every time) when the dry run raises, an argument has no stable description,
    or the pipeline reaches kfp's task directly (``task.kfp_task``): what it does there is not noted.

    Example:
        >>> spec_key(app.pipelines["crashed_pipeline"])  # doctest: +SKIP
        '9b1f...'
    """
    app = pipeline.owner
    notes: list[Any] = []
    builder = KfpBuilder(pipeline, image or app.image_url, app.package_entrypoint, notes=notes)
    try:
        with building(builder):
            pipeline.func(**{p.name: Stand("param", p.name) for p in pipeline.params})
        made_of = {
            "format": 1,
            "code": code_digest("hmlcore"),  # the compiler's own code, the installed distributions (kfp's version), Python's
            "kfp": importlib.metadata.version("kfp"),
            "pipeline": [pipeline.name, pipeline.description, [[p.name, p.type.__name__, _parameter_default(p)] for p in pipeline.params]],
            "app": [app.name, app.package_entrypoint, builder.image, app.cluster_platform, app.k8s_namespace, described(dict(app.env))],
            "notes": notes,
        }
        text = json.dumps(made_of, sort_keys=True, allow_nan=True)
    except Exception:  # noqa: BLE001 - the real compile reports what is wrong; this only decides whether to reuse a spec
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def _parameter_default(param: Any) -> Any:
    return {"required": True} if param.required else described(param.default)
