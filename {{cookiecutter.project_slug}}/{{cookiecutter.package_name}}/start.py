"""The entry point: builds the HmlApp and registers the model, the pipelines of pipeline.py and the inference API.

``{{ cookiecutter.package_name }} --help`` lists the commands; ``main`` is the console script.
"""

from __future__ import annotations

import logging
import os

from hmlcore import hml

from {{ cookiecutter.package_name }} import inference, pipeline, shared

IMAGE = os.environ.get("HML_IMAGE", "{{ cookiecutter.docker_image }}:latest")
K8S_NAMESPACE = os.environ.get("K8S_NAMESPACE", "{{ cookiecutter.k8s_namespace }}")
#: the platform of the cluster's pods (steps and inference); this machine stays on HML_PLATFORM (default local)
CLUSTER_PLATFORM = os.environ.get("HML_CLUSTER_PLATFORM", "{{ cookiecutter.cluster_platform }}")
{%- if cookiecutter.cluster_platform == "s3" %}
#: where the s3 platform keeps the lake and the warehouse: Kubeflow Pipelines' own object store (bucket
#: mlpipeline); private/<namespace>/ is a prefix multi-user Kubeflow lets each namespace write
S3_SETTINGS = {
    name: os.environ.get(name, default)
    for name, default in {
        "HML_S3_ENDPOINT": "http://seaweedfs.kubeflow:9000",
        "HML_S3_BUCKET": "mlpipeline",
        "HML_S3_PREFIX": f"private/{K8S_NAMESPACE}/{{ cookiecutter.project_slug }}",
    }.items()
}
#: the Kubernetes secret with the store's keys (accesskey, secretkey): KFP's artifact secret, in every KFP namespace
S3_SECRET = os.environ.get("HML_S3_SECRET", "mlpipeline-minio-artifact")
{%- endif %}
{%- if cookiecutter.cluster_platform == "gcp" %}
#: where the GCP platform keeps the lake (GCS) and the warehouse (BigQuery); the environment overrides each
GCP_SETTINGS = {
    name: os.environ.get(name, default)
    for name, default in {
        "GCP_PROJECT": "{{ cookiecutter.gcp_project }}",
        "GCP_LOCATION": "{{ cookiecutter.gcp_region or 'US' }}",
        "HML_GCS_BUCKET": "{{ cookiecutter.gcp_project }}-{{ cookiecutter.project_slug }}",
        "HML_BQ_DATASET": "{{ cookiecutter.package_name }}",
    }.items()
}
{%- endif %}


def create_app() -> hml.HmlApp:
    """Build the app with everything registered on it."""
    app = hml.HmlApp(
        name="{{ cookiecutter.project_slug }}",
        platform=os.environ.get("HML_PLATFORM", "local"),
        cluster_platform=CLUSTER_PLATFORM,
        image_url=IMAGE,
        package_entrypoint="{{ cookiecutter.package_name }}",
        inference_port=8000,
        k8s_namespace=K8S_NAMESPACE,
    )
{%- if cookiecutter.cluster_platform == "s3" %}
    app.with_envs(S3_SETTINGS)  # every pipeline step and inference pod gets them too
{%- else %}
    app.with_envs(GCP_SETTINGS)  # every pipeline step and inference pod gets them too
{%- endif %}
    app.register_model(shared.MODEL_NAME, shared.model_container())

    app.pipelines.register(pipeline.{{ cookiecutter.pipeline_name }})
    app.pipelines.register(pipeline.{{ cookiecutter.package_name }}_score)

    @hml.deploy_op(app.pipelines)
    def op_configurator(op):
        """Configure every pipeline step's container for the cluster."""
{%- if cookiecutter.cluster_platform == "s3" %}
        return op.with_s3_auth(S3_SECRET).with_resources(cpu_request="500m", memory_request="1Gi")
{%- else %}
        return op.with_resources(cpu_request="500m", memory_request="1Gi")
{%- endif %}

    @hml.inference(app.inference)
    def load_model(inference_app: hml.HmlInferenceApp):
        """Load the newest published model before serving, and answer /predict with inference.predict."""
        container = inference_app.get_model(shared.MODEL_NAME)
        container.load()
        inference_app.set_predictor(inference.predict, model=shared.MODEL_NAME)
        hml.enable_monitoring(inference_app, thresholds=shared.DRIFT_THRESHOLDS)  # GET /metrics and GET /drift
        logging.getLogger(__name__).info("serving %s version %s", container.name, container.version)

    @hml.deploy_inference(app.inference)
    def deploy_inference(deployment: hml.HmlInferenceDeployment):
        """Configure the inference API on Kubernetes (`{{ cookiecutter.package_name }} inference manifest` prints the result)."""
{%- if cookiecutter.cluster_platform == "s3" %}
        return deployment.with_s3_auth(S3_SECRET).with_resources(cpu_request="250m", memory_request="512Mi", memory_limit="1Gi")
{%- else %}
        return deployment.with_resources(cpu_request="250m", memory_request="512Mi", memory_limit="1Gi")
{%- endif %}

    return app


def main() -> None:
    """Run the command line."""
    try:
        app = create_app()
    except hml.HmlError as exc:
        raise SystemExit(f"Error: {exc}") from None
    app.start()
