"""``<entrypoint> inference manifest | deploy``: the inference API on Kubernetes.

::

    crashed inference manifest [--kserve] [-o FILE]       the YAML deploy would apply (kubectl-applyable)
    crashed inference deploy [--kserve] [--wait] [--dry-run]

Both build the objects from the app and its ``@hml.deploy_inference`` configurators, so a bad name or
quantity is refused before anything is sent. The ``kubernetes`` client is imported only when a command
runs, so ``--help`` stays fast. Nothing here imports kfp.
"""

from __future__ import annotations

from typing import Any

import click

from hmlcore._files import write_atomic
from hmlcore.cli._common import CliApp, guard
from hmlcore.deploy.k8s import inference_deployment, to_yaml
from hmlcore.storage.config import check_cluster_platform

__all__ = ["add_k8s_commands"]


def _manifests(app: CliApp, *, image: str | None, namespace: str | None, kserve: bool, allow_pod_local: bool) -> list[dict[str, Any]]:
    deployment = inference_deployment(app, image=image, namespace=namespace)
    platform = deployment.env.get("HML_PLATFORM", {}).get("value")
    check_cluster_platform(platform, what=f"inference deployment {deployment.name}", allow_pod_local=allow_pod_local)
    return [deployment.kserve_manifest()] if kserve else deployment.manifests()


def add_k8s_commands(group: click.Group, app: CliApp) -> click.Group:
    """Add ``manifest`` and ``deploy`` to the ``inference`` group of ``app``."""
    image_option = click.option(
        "--image", default=None, envvar="HML_IMAGE", show_envvar=True, help="The image to run (default: the app's image)."
    )
    namespace_option = click.option(
        "--namespace",
        "-n",
        default=None,
        envvar="K8S_NAMESPACE",
        show_envvar=True,
        help=f"The namespace to deploy into (default: {app.k8s_namespace}).",
    )
    kserve_option = click.option("--kserve", is_flag=True, help="A KServe InferenceService (custom predictor) instead.")
    allow_pod_local_option = click.option(
        "--allow-pod-local",
        is_flag=True,
        envvar="HML_ALLOW_POD_LOCAL",
        show_envvar=True,
        help="Deploy a pod-local platform (local) anyway: only for one node whose pods share HML_HOME.",
    )

    @group.command("manifest")
    @image_option
    @namespace_option
    @kserve_option
    @click.option("--output", "-o", type=click.Path(dir_okay=False), default=None, help="Write the YAML to this file instead of stdout.")
    @allow_pod_local_option
    @guard
    def manifest_command(image: str | None, namespace: str | None, kserve: bool, output: str | None, allow_pod_local: bool) -> None:
        """Print the Kubernetes YAML that deploy would apply (kubectl apply -f reads it)."""
        text = to_yaml(_manifests(app, image=image, namespace=namespace, kserve=kserve, allow_pod_local=allow_pod_local))
        if output is None:
            click.echo(text, nl=False)
            return
        write_atomic(output, text)
        click.echo(f"wrote {output}", err=True)

    @group.command("deploy")
    @image_option
    @namespace_option
    @kserve_option
    @click.option("--wait", is_flag=True, help="Follow the rollout until the pods are ready (or --timeout passes).")
    @click.option("--timeout", type=click.FloatRange(min=1), default=300, show_default=True, help="Seconds --wait waits for the rollout.")
    @click.option("--dry-run", is_flag=True, help="Have the server validate the objects without storing them.")
    @click.option(
        "--kubeconfig", type=click.Path(dir_okay=False), default=None, help="The kubeconfig (default: KUBECONFIG or ~/.kube/config)."
    )
    @click.option(
        "--context", default=None, envvar="HML_K8S_CONTEXT", show_envvar=True, help="The kubeconfig context (default: its current context)."
    )
    @allow_pod_local_option
    @guard
    def deploy_command(
        image: str | None,
        namespace: str | None,
        kserve: bool,
        wait: bool,
        timeout: float,
        dry_run: bool,
        kubeconfig: str | None,
        context: str | None,
        allow_pod_local: bool,
    ) -> None:
        """Create or update the inference API's objects on Kubernetes, and say what changed."""
        from hmlcore.deploy.k8s_apply import KubeClient  # imported when the command runs: keeps --help light

        manifests = _manifests(app, image=image, namespace=namespace, kserve=kserve, allow_pod_local=allow_pod_local)
        client = KubeClient.from_config(kubeconfig=kubeconfig, context=context)
        try:
            for manifest in manifests:
                click.echo(client.apply(manifest, dry_run=dry_run).line())
            if wait and dry_run:
                click.echo("not waiting: a dry run starts no rollout", err=True)
            elif wait:
                client.wait_for_rollout(manifests[0], timeout=timeout, echo=click.echo)
        finally:
            client.close()

    return group
