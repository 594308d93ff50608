"""``<entrypoint> pipelines <pipeline> run <step> | run-all | compile | deploy-dev | deploy-prod``.

Nothing here imports kfp at start-up: compile, run-all and the deploy commands import it when they run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from hmlcore import _env
from hmlcore._files import write_atomic
from hmlcore.cli._common import CliApp, HmlCliError, guard
from hmlcore.errors import HmlError
from hmlcore.pipelines.context import OpContext
from hmlcore.pipelines.ops import HmlOp
from hmlcore.pipelines.values import parse_value, render_output, render_value

if TYPE_CHECKING:
    from hmlcore.pipelines.cache import Hit
    from hmlcore.pipelines.dag import HmlPipeline

__all__ = ["pipelines_group"]


class _StepGroup(click.Group):
    """``run``: one subcommand per step, created when asked for (tracing the pipeline is cheap)."""

    def __init__(self, app: CliApp, pipeline: HmlPipeline, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.pipeline = pipeline

    def list_commands(self, ctx: click.Context) -> list[str]:
        try:
            return [o.name for o in self.pipeline.ops]
        except HmlError as exc:
            raise HmlCliError(str(exc)) from exc

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        try:
            step = self.pipeline.get_op(cmd_name)
        except HmlError:
            return None
        return _step_command(self.app, self.pipeline, step)


def _step_command(app: CliApp, pipeline: HmlPipeline, step: HmlOp) -> click.Command:
    params: list[click.Parameter] = []
    for p in step.params:
        kind = p.type.__name__ if p.type not in (list, dict) else f"{p.type.__name__} as JSON"
        default = "" if p.required else f" [default: {render_value(p.default, p.type)}]"
        params.append(click.Option([p.option, p.name], type=str, required=p.required, help=f"{kind}{default}"))
    params.append(click.Option(["--hml-run-id"], default=None, help="The pipeline run id (set by the pipeline runner)."))
    params.append(
        click.Option(["--hml-output"], default=None, type=click.Path(dir_okay=False), help="Write the step's output to this file.")
    )

    @guard
    def callback(hml_run_id: str | None, hml_output: str | None, **raw: str | None) -> None:
        from hmlcore.pipelines.run_folder import new_run_id  # imported when the command runs: keeps --help light

        arguments: dict[str, Any] = {}
        for p in step.params:
            text = raw.get(p.name)
            if text is None:
                continue
            try:
                arguments[p.name] = parse_value(text, p.type)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=p.option) from exc
        run_id = hml_run_id or _env.RUN_ID.get() or new_run_id()
        cached = _StepCacheHook(app, pipeline, step, {name: text for name, text in raw.items() if text is not None})
        hit = cached.lookup()
        if hit is not None:
            _emit(hit.output, hml_output)
            return
        context = OpContext(store=pipeline.owner.store, models=pipeline.owner.models, pipeline=pipeline.name, step=step.name, run_id=run_id)
        result = step.invoke(context, arguments)
        text = None if step.return_type is None else render_output(result, step.return_type, step=step.name)
        _emit(text, hml_output)
        cached.record(run_id, text)

    return click.Command(step.name, callback=callback, params=params, help=step.description or f"Run step {step.name}.")


def _emit(text: str | None, output: str | None) -> None:
    """Write a step's output text to ``output`` (the runner's file), or print it."""
    if text is None:
        return
    if output:
        write_atomic(output, text)
    else:
        click.echo(text)


class _StepCacheHook:
    """The step cache around one step's run (:mod:`hmlcore.pipelines.cache`): the same in a pod as on a laptop."""

    def __init__(self, app: CliApp, pipeline: HmlPipeline, step: HmlOp, raw: dict[str, str]) -> None:
        from hmlcore.pipelines.cache import StepCache, step_key  # imported when a step runs: keeps --help light

        self.step = step
        self.store = StepCache(app.lake, pipeline.name)
        self.key = step_key(pipeline=pipeline.name, op=step, raw=raw, env=os.environ)

    def lookup(self) -> Hit | None:
        """The usable cache entry for this run of the step, if ``HML_CACHE`` allows reuse and one is recorded."""
        from hmlcore.pipelines.cache import cache_enabled  # imported when a step runs: keeps --help light

        if not cache_enabled(os.environ):
            return None
        hit = self.store.lookup(self.step.name, self.key, warn=lambda line: click.echo(f"warning: {line}", err=True))
        if hit is not None:
            click.echo(f"{self.step.name}: cached (from run {hit.run_id})", err=True)
        return hit

    def record(self, run_id: str, text: str | None) -> None:
        """Record the succeeded step's output; a cache that cannot be written is a warning, not a failed step."""
        try:
            self.store.record(self.step.name, self.key, run_id=run_id, output=text)
        except HmlError as exc:
            click.echo(f"warning: {self.step.name}: its output is not cached: {exc}", err=True)


def _parse_params(pairs: Sequence[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as strings; the runner parses each by the pipeline parameter's type."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        values[name.replace("-", "_")] = text
    return values


def _allow_pod_local_option(func: Any) -> Any:
    return click.option(
        "--allow-pod-local",
        is_flag=True,
        envvar="HML_ALLOW_POD_LOCAL",
        show_envvar=True,
        help="Send a pod-local platform (local) anyway: only for one node whose pods share HML_HOME.",
    )(func)


def _kfp_options(func: Any) -> Any:
    """The options every deploy command takes, each with its environment variable."""
    options = [
        _allow_pod_local_option,
        click.option(
            "--host", envvar="KFP_HOST", show_envvar=True, default=None, help="Kubeflow Pipelines API endpoint URL (backend 2.5 or newer)."
        ),
        click.option(
            "--namespace",
            envvar="KFP_NAMESPACE",
            show_envvar=True,
            default=None,
            help="Kubernetes namespace the experiment and runs go to (default: the app's k8s_namespace).",
        ),
        click.option("--client-id", envvar="KFP_CLIENT_ID", show_envvar=True, default=None, help="OAuth client id of an IAP endpoint."),
        click.option("--existing-token", envvar="KFP_EXISTING_TOKEN", show_envvar=True, default=None, help="A bearer token to send."),
        click.option(
            "--image", envvar="HML_IMAGE", show_envvar=True, default=None, help="The image steps run in (default: the app's image)."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _target(app: CliApp, host: str | None, namespace: str | None, client_id: str | None, existing_token: str | None) -> Any:
    from hmlcore.pipelines.kfp_deploy import KfpTarget  # imported when the command runs: keeps --help light

    return KfpTarget(host=host or "", namespace=namespace or app.k8s_namespace, client_id=client_id, existing_token=existing_token)


def _spawner(app: CliApp) -> Callable[[Sequence[str]], list[str]] | None:
    """How ``run-all`` starts a step as a child process: the package's console script installed beside this Python.

    None when it is not installed there (the code runs from a source folder or a notebook): loops then
    run their iterations one after another in this process.
    """
    script = os.path.join(os.path.dirname(sys.executable), app.package_entrypoint)
    if not (os.path.isfile(script) and os.access(script, os.X_OK)):
        return None
    return lambda command: [script, *command[1:]]


def _pipeline_group(app: CliApp, pipeline: HmlPipeline) -> click.Group:
    summary = pipeline.description.splitlines()[0] if pipeline.description else ""
    # the listing shows the summary (click's own short help would stop at "Pipeline <name>.")
    group = click.Group(pipeline.name, help=f"Pipeline {pipeline.name}. {summary}".strip(), short_help=summary or None)
    group.add_command(_StepGroup(app, pipeline, name="run", help="Run one step, exactly as its container in the cluster runs it."))

    @group.command("run-all")
    @click.option("--resume", "resume", metavar="RUN_ID", default=None, help="Finish an earlier run: skip the steps that succeeded.")
    @click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A pipeline parameter (repeatable).")
    @click.option("--debug", is_flag=True, default=False, help="Print a failing step's traceback (as HML_DEBUG=1 does).")
    @click.option(
        "--no-cache", "no_cache", is_flag=True, default=False, help="Run every step, even one whose inputs and code are unchanged."
    )
    @guard
    def run_all_command(resume: str | None, params: tuple[str, ...], debug: bool, no_cache: bool) -> None:
        """Run every step locally, in dependency order, the way Kubeflow would.

        A step whose inputs, code and settings are unchanged since a run that succeeded is not run
        again: its recorded output is reused and it is shown as cached (``--no-cache`` or
        ``--param cache=false`` runs it anyway). Each step's log is kept beside its output in the run
        folder; a failure names the command that reruns that step alone.
        """
        from hmlcore.pipelines.runner import run_all  # imported when the command runs: keeps --help light

        if debug:
            os.environ[_env.DEBUG.name] = "1"

        def execute(command: Sequence[str]) -> None:
            if command[0] != app.package_entrypoint:
                raise HmlError(f"step command {command[0]!r} is not this package's entrypoint {app.package_entrypoint!r}")
            app.cli().main(args=list(command[1:]), prog_name=command[0], standalone_mode=False)

        values = _parse_params(params)
        use_cache = not no_cache
        if "cache" in values and "cache" not in {p.name for p in pipeline.params}:  # run-all's own switch, unless the pipeline has one
            try:
                use_cache = use_cache and bool(parse_value(values.pop("cache"), bool))
            except ValueError as exc:
                raise click.BadParameter(f"cache: {exc}", param_hint="--param") from exc
        run_id = run_all(
            pipeline,
            params=values,
            resume=resume,
            execute=execute,
            spawn=_spawner(app),
            echo=lambda line: click.echo(line, err=True),
            cache=use_cache,
        )
        click.echo(run_id)

    @group.command("trainjob-rbac")
    @click.option(
        "--service-account",
        default="default-editor",
        show_default=True,
        envvar="HML_SERVICE_ACCOUNT",
        show_envvar=True,
        help="The service account the steps run as (multi-user Kubeflow: default-editor; standalone Pipelines: pipeline-runner).",
    )
    @click.option("--namespace", default=None, help="The namespace the steps run in (default: the app's).")
    @guard
    def trainjob_rbac_command(service_account: str, namespace: str | None) -> None:
        """Print the Role and RoleBinding that let the steps submit TrainJobs (training on workers): pipe it to kubectl apply -f -."""
        import yaml  # imported when the command runs: keeps --help light

        from hmlcore.deploy._k8s_names import check_dns_label  # likewise
        from hmlcore.deploy.trainjob import rbac_manifests  # likewise

        where = check_dns_label(namespace or app.k8s_namespace, "namespace")
        manifests = rbac_manifests(where, service_account=check_dns_label(service_account, "service account"))
        click.echo(yaml.safe_dump_all(manifests, sort_keys=False), nl=False)

    @group.command("compile")
    @click.option(
        "-o", "--output", "output", type=click.Path(dir_okay=False), default=None, help="File to write (default: <pipeline>.yaml)."
    )
    @click.option("--image", default=None, envvar="HML_IMAGE", show_envvar=True, help="The image steps run in (default: the app's image).")
    @_allow_pod_local_option
    @guard
    def compile_command(output: str | None, image: str | None, allow_pod_local: bool) -> None:
        """Compile the pipeline into a Kubeflow Pipelines v2 spec (YAML) for a Kubeflow Pipelines backend 2.5 or newer."""
        from hmlcore.pipelines.compiler import compile_pipeline  # yaml, and kfp when compiling: not for --help

        path = output or f"{pipeline.name}.yaml"
        compiled = compile_pipeline(pipeline, path, image=image, for_cluster=True, allow_pod_local=allow_pod_local)
        tasks = len(compiled.spec["root"]["dag"]["tasks"])
        click.echo(f"compiled {pipeline.name}: {tasks} steps", err=True)
        click.echo(path)

    @group.command("deploy-dev")
    @_kfp_options
    @click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A pipeline parameter for the run (repeatable).")
    @guard
    def deploy_dev_command(
        allow_pod_local: bool,
        host: str | None,
        namespace: str | None,
        client_id: str | None,
        existing_token: str | None,
        image: str | None,
        params: tuple[str, ...],
    ) -> None:
        """Upload the pipeline as <pipeline>-dev (a new version if it exists) and start one run now."""
        from hmlcore.pipelines.kfp_deploy import deploy_dev  # imported when the command runs: keeps --help light

        target = _target(app, host, namespace, client_id, existing_token)
        result = deploy_dev(
            pipeline,
            target=target,
            image=image,
            params=_parse_params(params),
            echo=lambda line: click.echo(line, err=True),
            allow_pod_local=allow_pod_local,
        )
        click.echo(f"run {result.run_id}: {result.url}")

    @group.command("deploy-prod")
    @_kfp_options
    @click.option(
        "--version", "version", envvar="HML_VERSION", show_envvar=True, default=None, help="Version name (default: the image tag)."
    )
    @click.option("--cron", default=None, help="Schedule, 5- or 6-field cron (default: the one in @hml.pipeline).")
    @guard
    def deploy_prod_command(
        allow_pod_local: bool,
        host: str | None,
        namespace: str | None,
        client_id: str | None,
        existing_token: str | None,
        image: str | None,
        version: str | None,
        cron: str | None,
    ) -> None:
        """Upload a new version of the pipeline and replace its recurring run with one on its cron schedule."""
        from hmlcore.pipelines.kfp_deploy import deploy_prod  # imported when the command runs: keeps --help light

        target = _target(app, host, namespace, client_id, existing_token)
        result = deploy_prod(
            pipeline,
            target=target,
            image=image,
            version=version,
            cron=cron,
            echo=lambda line: click.echo(line, err=True),
            allow_pod_local=allow_pod_local,
        )
        click.echo(f"recurring run {result.recurring_run_id} (version {result.version_name}): {result.url}")

    return group


class _PipelinesGroup(click.Group):
    def __init__(self, app: CliApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.app.pipelines.pipelines)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        pipeline = self.app.pipelines.pipelines.get(cmd_name)
        return _pipeline_group(self.app, pipeline) if pipeline else None


def pipelines_group(app: CliApp) -> click.Group:
    """The ``pipelines`` group: one subgroup per registered pipeline."""
    return _PipelinesGroup(app, name="pipelines", help="Run, compile and deploy the training pipelines.")
