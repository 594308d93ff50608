"""``HmlApp``: one per package. It holds the pipelines, the inference API and the models, and owns the CLI.

It is where the layers meet: the pipelines, the inference API and the deployment each get what they use
(the data store, the models, the name and settings) when they are made, and none of them keeps the app.

Example:
    >>> from hmlcore import hml
    >>> app = hml.HmlApp(name="car-crashes", package_entrypoint="crashed", image_url="crashed:dev")
    >>> app.name, app.inference_port
    ('car-crashes', 8000)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hmlcore._settings import EnvSettings
from hmlcore._warm import run_warm
from hmlcore.deploy._k8s_names import check_dns_label
from hmlcore.errors import ConfigError
from hmlcore.model.lookup import find_model
from hmlcore.pipelines.dag import HmlPipelineApp
from hmlcore.serving.inference import HmlInferenceApp
from hmlcore.storage.config import PLATFORMS, PlatformSettings, check_env_name
from hmlcore.storage.lake import Lake
from hmlcore.storage.store import DataStore
from hmlcore.storage.warehouse import Warehouse

if TYPE_CHECKING:
    import click

    from hmlcore.model.container import ModelContainer

__all__ = ["HmlApp"]


def _check_platform(value: object, what: str) -> str:
    canonical = {p.lower(): p for p in PLATFORMS}.get(str(value).lower())
    if canonical is None:
        raise ConfigError(f"unknown {what} {value!r}: use one of {', '.join(PLATFORMS)}")
    return canonical


class HmlApp(EnvSettings):
    """The application: pipelines (``app.pipelines``), the inference API (``app.inference``) and models.

    Args:
        name: the project's name, a DNS-1123 label (it names Kubernetes objects).
        platform: where this process keeps its data: ``"local"`` (embedded lake and warehouse), ``"s3"``
            (an S3-compatible bucket, DuckDB over Parquet in it) or ``"GCP"`` (GCS and BigQuery).
        cluster_platform: the platform of the cluster's pods: every pipeline step and the inference pod
            get ``HML_PLATFORM`` set to it. ``"local"`` or ``None`` (nothing set) keeps data on each pod's own
            disk, so compiling, deploying and printing manifests refuse it unless told otherwise.
        image_url: the container image every step and the inference API run in.
        package_entrypoint: the package's console script (``crashed``); steps run as ``<entrypoint> pipelines ...``.
        inference_port: the port the inference API listens on.
        k8s_namespace: the Kubernetes namespace to deploy into.
    """

    def __init__(
        self,
        name: str,
        platform: str = "local",
        cluster_platform: str | None = None,
        image_url: str | None = None,
        package_entrypoint: str | None = None,
        inference_port: int = 8000,
        k8s_namespace: str = "kubeflow",
    ) -> None:
        check_dns_label(name, "app name")
        if not isinstance(inference_port, int) or isinstance(inference_port, bool) or not 1 <= inference_port <= 65535:
            raise ConfigError(f"inference_port must be an integer from 1 to 65535, got {inference_port!r}")
        check_dns_label(k8s_namespace, "k8s_namespace")
        self.name = name
        self.platform = platform
        self.cluster_platform = _check_platform(cluster_platform, "cluster_platform") if cluster_platform else None
        self.image_url = image_url or f"{name}:latest"
        self.package_entrypoint = package_entrypoint or name
        self.inference_port = inference_port
        self.k8s_namespace = k8s_namespace
        self.env: dict[str, str] = {}
        self.models: dict[str, ModelContainer] = {}
        #: the settings, lake and warehouse, made on first use; ``self.env`` gives its defaults
        self.store = DataStore(platform, defaults=self.env)
        self.pipelines = HmlPipelineApp(self)
        self.inference = HmlInferenceApp(name=name, import_name=self.package_entrypoint, models=self.models)
        self._cli: click.Group | None = None

    def __repr__(self) -> str:
        return f"HmlApp({self.name!r}, platform={self.platform!r})"

    # ----------------------------------------------------------------- models
    def register_model(self, name: str, container: ModelContainer) -> ModelContainer:
        """Register ``container`` under ``name``; pipelines and the inference API find it there."""
        if name in self.models and self.models[name] is not container:
            raise ConfigError(f"model {name!r} is registered twice")
        container.attach(lake=lambda: self.lake, image=self.image_url)
        self.models[name] = container
        return container

    def get_model(self, name: str) -> ModelContainer:
        """The model container registered as ``name``."""
        return find_model(self.models, name)

    # ----------------------------------------------------------------- environment
    def with_env(self, name: str, value: Any) -> HmlApp:
        """Set an environment variable in every pipeline step's container."""
        self.env[check_env_name(name)] = str(value)
        return self

    # ----------------------------------------------------------------- data
    @property
    def settings(self) -> PlatformSettings:
        """The platform settings, resolved from the environment and checked on first use.

        The app's own environment (:meth:`with_env`, which also reaches every pipeline step and the
        inference pods) gives the defaults; the process environment overrides them.

        Raises:
            ConfigError: a GCP setting is missing or malformed (see :class:`~hmlcore.storage.config.PlatformSettings`).
        """
        return self.store.settings

    @property
    def lake(self) -> Lake:
        """Where artifacts go (a folder locally, an S3 bucket on s3, a GCS bucket on GCP)."""
        return self.store.lake

    @property
    def warehouse(self) -> Warehouse:
        """The SQL warehouse (DuckDB locally, DuckDB over Parquet in the bucket on s3, BigQuery on GCP)."""
        return self.store.warehouse

    # ----------------------------------------------------------------- command line
    def cli(self) -> click.Group:
        """The package's click command group (built once)."""
        if self._cli is None:
            from hmlcore.cli.main import build_cli  # click and the commands load only when the CLI is built

            self._cli = build_cli(self)
        return self._cli

    def start(self, args: list[str] | None = None) -> None:
        """Run the command line (the package's ``main()`` calls this).

        With ``args`` left to ``sys.argv``, a ``pipelines <name> run-all`` runs in a warm interpreter when one
        is up for this environment (:mod:`hmlcore._warm`; ``HML_WARM=false`` turns it off).
        """
        if args is None:
            code = run_warm(package=self.package_entrypoint.replace("-", "_"))
            if code is not None:
                raise SystemExit(code)
        self.cli().main(args=args, prog_name=self.package_entrypoint)
