"""Deploy: the inference API's Kubernetes objects, and applying them to a cluster.

It imports :mod:`hmlcore.serving` (the server's settings the pod runs with) and :mod:`hmlcore.storage`,
never the pipelines, CLI or app layers (a deployment reads the app through the ``DeployedApp`` Protocol);
the kubernetes client is imported only to build or apply objects.

- :mod:`~hmlcore.deploy.k8s`: :class:`HmlInferenceDeployment`, what ``@hml.deploy_inference`` configures;
  :mod:`~hmlcore.deploy._k8s_build`: the manifests; :mod:`~hmlcore.deploy._k8s_names`: names.
- :mod:`~hmlcore.deploy.k8s_apply`: server-side apply and waiting for the rollout.
"""

from __future__ import annotations

from hmlcore.deploy.k8s import HmlInferenceDeployment, inference_deployment

__all__ = ["HmlInferenceDeployment", "inference_deployment"]
