"""deploy-dev / deploy-prod through kfp.Client against the fake v2beta1 API server in tests/kfp_server.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmlcore import hml
from hmlcore.pipelines.kfp_deploy import KfpTarget, deploy_dev, deploy_prod, version_from_image

from .conftest import free_port
from .kfp_server import FakeKfp
from .pipeline_demo import create_app

pytestmark = pytest.mark.slow  # every test here starts a server or compiles with kfp


@pytest.fixture(autouse=True)
def kfp_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kfp.Client writes its context file under ~/.config; keep it in the test's folder."""
    from kfp.client import client

    monkeypatch.setattr(client.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp" / "context.json"))


@pytest.fixture
def fake():
    with FakeKfp() as server:
        yield server


@pytest.mark.slow
def test_deploy_prod_twice_leaves_one_pipeline_two_versions_one_recurring_run(fake: FakeKfp):
    demo = create_app().pipelines["demo"]
    first = deploy_prod(demo, target=KfpTarget(host=fake.url))
    second = deploy_prod(demo, target=KfpTarget(host=fake.url))
    assert [p["display_name"] for p in fake.pipelines.values()] == ["demo"]
    versions = fake.versions_of(first.pipeline_id)
    assert len(versions) == 2 and first.version_name == "abc123" and second.version_name.startswith("abc123-")
    assert [e["display_name"] for e in fake.experiments.values()] == ["demos"]
    (job,) = fake.recurring_runs.values()
    assert job["recurring_run_id"] == second.recurring_run_id and second.replaced == (first.recurring_run_id,)
    assert job["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * 1-5"}}
    assert int(job["max_concurrency"]) == 1 and job["mode"] == "ENABLE" and job["experiment_id"] == second.experiment_id
    assert job["pipeline_version_reference"]["pipeline_version_id"] == second.version_id
    uploaded = fake.versions[second.version_id]["pipeline_spec"]
    assert uploaded["deploymentSpec"]["executors"]["exec-shout"]["container"]["image"] == "registry.example/hml-demo:abc123"
    assert second.url == f"{fake.url}/#/recurringrun/details/{second.recurring_run_id}"


@pytest.mark.slow
def test_deploy_prod_names_the_version_and_takes_a_5_field_cron(fake: FakeKfp):
    demo = create_app().pipelines["demo"]
    result = deploy_prod(demo, target=KfpTarget(host=fake.url), image="reg/hml-demo:9f8e7d", cron="15 4 * * *")
    assert result.version_name == "9f8e7d"
    assert fake.recurring_runs[result.recurring_run_id]["trigger"]["cron_schedule"]["cron"] == "0 15 4 * * *"
    named = deploy_prod(demo, target=KfpTarget(host=fake.url), version="release-1")
    assert named.version_name == "release-1"


@pytest.mark.slow
def test_deploy_dev_uploads_pipeline_dev_and_starts_one_run(fake: FakeKfp):
    demo = create_app().pipelines["demo"]
    first = deploy_dev(demo, target=KfpTarget(host=fake.url), params={"count": "7", "weights": "[3]"})
    second = deploy_dev(demo, target=KfpTarget(host=fake.url))
    assert [p["display_name"] for p in fake.pipelines.values()] == ["demo-dev"]
    assert len(fake.versions_of(first.pipeline_id)) == 2 and first.version_id != second.version_id
    assert [e["display_name"] for e in fake.experiments.values()] == ["demos-dev"]
    assert len(fake.runs) == 2 and not fake.recurring_runs
    run = fake.runs[first.run_id]
    assert run["runtime_config"]["parameters"] == {"count": 7, "weights": [3]}
    assert run["pipeline_version_reference"] == {"pipeline_id": first.pipeline_id, "pipeline_version_id": first.version_id}
    assert first.url == f"{fake.url}/#/runs/details/{first.run_id}"


@pytest.mark.slow
def test_a_refused_run_removes_what_the_deploy_uploaded(fake: FakeKfp):
    demo = create_app().pipelines["demo"]
    fake.fail("POST", "/runs", 500)
    with pytest.raises(hml.DeployError, match=r"failed to start a run of demo-dev: HTTP 500 injected failure"):
        deploy_dev(demo, target=KfpTarget(host=fake.url))
    assert not fake.pipelines and not fake.versions and not fake.runs

    deploy_prod(demo, target=KfpTarget(host=fake.url))
    fake.fail("POST", "/recurringruns", 503)
    with pytest.raises(hml.DeployError, match="HTTP 503"):
        deploy_prod(demo, target=KfpTarget(host=fake.url))
    (pipeline,) = fake.pipelines.values()
    assert len(fake.versions_of(pipeline["pipeline_id"])) == 1 and len(fake.recurring_runs) == 1  # the earlier deploy, intact


def test_without_the_token_the_server_says_401_and_nothing_is_sent_beyond_the_health_check():
    demo = create_app().pipelines["demo"]
    with FakeKfp(token="s3cret") as fake:
        with pytest.raises(hml.DeployError, match=r"refused to check its health: HTTP 401 .*--existing-token"):
            deploy_prod(demo, target=KfpTarget(host=fake.url))
        assert fake.requests == [("GET", "/apis/v2beta1/healthz")]
        result = deploy_prod(demo, target=KfpTarget(host=fake.url, existing_token="s3cret"))
        assert result.recurring_run_id in fake.recurring_runs


def test_a_403_on_upload_is_one_line_and_leaves_nothing(fake: FakeKfp):
    fake.fail("POST", "/pipelines/upload_version", 403)
    with pytest.raises(hml.DeployError, match=r"refused to upload version abc123 of demo: HTTP 403") as caught:
        deploy_prod(create_app().pipelines["demo"], target=KfpTarget(host=fake.url))
    assert "\n" not in str(caught.value)
    assert not fake.pipelines and not fake.versions and not fake.recurring_runs


def test_an_unreachable_host_is_one_line():
    port = free_port()
    with pytest.raises(hml.DeployError, match=rf"cannot reach Kubeflow Pipelines at http://127.0.0.1:{port}: .*[Cc]onnection refused"):
        deploy_dev(create_app().pipelines["tiny"], target=KfpTarget(host=f"http://127.0.0.1:{port}"))


def test_a_password_in_the_host_is_masked_in_the_error():
    port = free_port()
    with pytest.raises(hml.DeployError) as caught:
        deploy_dev(create_app().pipelines["tiny"], target=KfpTarget(host=f"http://admin:hunter2@127.0.0.1:{port}"))
    assert "hunter2" not in str(caught.value) and f"http://admin:***@127.0.0.1:{port}" in str(caught.value)


def test_what_can_be_checked_before_sending_is(fake: FakeKfp):
    app = create_app()
    with pytest.raises(hml.ConfigError, match="pipeline tiny has no schedule"):
        deploy_prod(app.pipelines["tiny"], target=KfpTarget(host=fake.url))
    with pytest.raises(hml.ConfigError, match="invalid cron '99 \\* \\* \\* \\*': minute '99'"):
        deploy_prod(app.pipelines["demo"], target=KfpTarget(host=fake.url), cron="99 * * * *")
    with pytest.raises(hml.PipelineError, match="pipeline parameter count: 'x' is not a whole number"):
        deploy_dev(app.pipelines["demo"], target=KfpTarget(host=fake.url), params={"count": "x"})
    app.pipelines.op_configurators.append(lambda op: op.with_env("bad name", 1))
    with pytest.raises(hml.ConfigError, match="invalid environment variable name 'bad name'"):
        deploy_prod(app.pipelines["demo"], target=KfpTarget(host=fake.url))
    assert fake.requests == []
    with pytest.raises(hml.ConfigError, match="no Kubeflow Pipelines host: pass --host or set KFP_HOST"):
        KfpTarget(host="")
    with pytest.raises(hml.ConfigError, match="must be a URL"):
        KfpTarget(host="kfp example")


@pytest.mark.parametrize(
    ("image", "version"),
    [("reg.io/a/b:1.2.3", "1.2.3"), ("localhost:5000/b", "latest"), ("b@sha256:0123456789abcdef0123", "0123456789ab"), ("b", "latest")],
)
def test_version_from_image(image: str, version: str):
    assert version_from_image(image) == version


@pytest.mark.parametrize("tag", ["2.4.0", "2.0.5", "1.8.5"])
def test_an_older_backend_is_refused_in_one_line_before_anything_is_sent(tag: str):
    """The fake answers healthz with the release the real apiserver reports (its TAG_NAME)."""
    with FakeKfp(tag_name=tag) as fake:
        with pytest.raises(hml.DeployError, match=rf"^Kubeflow Pipelines at {fake.url} is {tag}; hmlcore needs backend 2\.5\.0 or newer"):
            deploy_dev(create_app().pipelines["demo"], target=KfpTarget(host=fake.url))
        assert set(fake.requests) == {("GET", "/apis/v2beta1/healthz")}


def test_a_backend_that_does_not_say_its_release_is_deployed_to_with_a_note():
    lines: list[str] = []
    with FakeKfp(tag_name="unknown") as fake:
        result = deploy_dev(create_app().pipelines["tiny"], target=KfpTarget(host=fake.url), echo=lines.append)
        assert result.run_id in fake.runs
    assert (
        lines[0] == f"Kubeflow Pipelines at {fake.url} does not say its release (tag_name 'unknown'); hmlcore needs backend 2.5.0 or newer"
    )


def test_multi_user_kubeflow_gets_the_namespace_of_the_experiment():
    with FakeKfp(multi_user=True) as fake:
        result = deploy_prod(create_app().pipelines["demo"], target=KfpTarget(host=fake.url, namespace="team-a"))
        assert fake.experiments[result.experiment_id]["namespace"] == "team-a"
        # the KfpTarget default is the app's namespace, never empty
        dev = deploy_dev(create_app().pipelines["tiny"], target=KfpTarget(host=fake.url))
        assert fake.experiments[dev.experiment_id]["namespace"] == "kubeflow"


def test_a_pipeline_on_a_pod_local_platform_is_not_deployed(fake: FakeKfp):
    app = hml.HmlApp(name="laptop-only", package_entrypoint="laptop")

    @hml.op()
    def hello() -> str:
        return "hi"

    @hml.pipeline(app.pipelines, cron="0 0 * * *")
    def greet():
        hello()

    with pytest.raises(hml.ConfigError, match=r"^pipeline greet \(step hello\) would run on the pod-local platform 'local'"):
        deploy_prod(app.pipelines["greet"], target=KfpTarget(host=fake.url))
    assert fake.requests == []
    result = deploy_prod(app.pipelines["greet"], target=KfpTarget(host=fake.url), allow_pod_local=True)
    assert result.recurring_run_id in fake.recurring_runs
