"""`make image-test`: build the baked package's image with podman and run it the way CI and Kubeflow would.

1. Bake the default package and build its image with the package's own ``make image`` (the real
   ``app.Dockerfile``; the docker CLI talks to ``podman system service`` on a private socket), with the
   hmlcore the bake pinned: the wheel a bake from this folder builds.
2. In the image: ``--help``; ``pipelines <pipeline> run-all`` with the lake on a mounted volume; the
   image's default command (``inference run-prod``), asked for ``/predict`` from this machine with the
   baked README's own example; the process runs as a non-root user; its HEALTHCHECK reports healthy; it
   stops cleanly on SIGTERM.
3. Parity: every step's command line, taken from the compiled spec, runs in a container of its own (a
   fresh ``/tmp``, no network, only the lake shared on a volume, as pods share only the lake), and the
   model it publishes has the same sha256 as the one ``run-all`` publishes on this machine.

What it needs it sets up (as root, on Debian): podman, runc and debootstrap from apt; a containers.conf
for this kind of machine; a Debian bookworm base image made with debootstrap (no registry is reachable
here), tagged as the ``FROM`` name the Dockerfile expects. The base image's tarball is cached between
runs in ``$HML_IMAGE_TEST_CACHE`` (default ``~/.cache/hml-image-test``). Containers and the podman
service are removed on exit, also when a check fails or the run is interrupted.

The base image carries this machine's CA bundle (pip in the build reaches the index through it) and
pins the image's dependencies with ``constraints.txt``, the versions the host environment has, so the
image's model and the host's model come from the same libraries.

``HML_SKIP_IMAGE_TEST=1`` skips it on machines without podman; it says so loudly and never skips silently.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("HML_IMAGE_TEST_CACHE") or Path.home() / ".cache" / "hml-image-test")
TOOLS = {"podman": "podman", "runc": "runc", "debootstrap": "debootstrap"}  # command: Debian package
DEBIAN_SUITE = "bookworm"  # its python3 is 3.11, the template's default python_version
TAG = "image-test"
LAKE = "/lake"  # where every container sees the shared lake volume
STARTED = time.monotonic()


class ImageTestError(Exception):
    """A check failed; the message says which and what was seen."""


def log(message: str) -> None:
    print(f"[image-test {time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


def sh(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    inherit: bool = True,
    timeout: float = 600,
    quiet: bool = False,
    **options: Any,
) -> str:
    """Run ``command`` with ``env`` added to this environment (only ``env`` if not ``inherit``); return its stdout.

    Raises:
        ImageTestError: it exited with a non-zero code (its output is in the message).
    """
    if not quiet:
        log("$ " + " ".join(command))
    environment = {**os.environ, **(env or {})} if inherit else dict(env or {})
    done = subprocess.run(list(command), env=environment, capture_output=True, text=True, timeout=timeout, check=False, **options)
    if done.returncode != 0:
        raise ImageTestError(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def check(condition: bool, message: str) -> None:
    if not condition:
        raise ImageTestError(message)
    log(f"ok: {message}")


# ------------------------------------------------------------------------------------------------- setup
def install_tools() -> None:
    """podman, runc and debootstrap from apt, when one is missing."""
    missing = sorted(package for command, package in TOOLS.items() if shutil.which(command) is None)
    if not missing:
        return
    if os.geteuid() != 0:
        raise ImageTestError(f"{', '.join(missing)} missing: run as root, or install them (apt-get install {' '.join(missing)})")
    log(f"installing {', '.join(missing)} with apt")
    apt_env = {"DEBIAN_FRONTEND": "noninteractive"}
    sh(["apt-get", "update", "-q"], env=apt_env, timeout=600)
    sh(["apt-get", "install", "-y", "-q", "--no-install-recommends", *TOOLS.values()], env=apt_env, timeout=900)


def containers_conf(folder: Path) -> Path:
    """A containers.conf for this kind of machine (hybrid cgroups, no systemd, limited ulimits)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if hard == resource.RLIM_INFINITY else hard
    path = folder / "containers.conf"
    path.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n'
        'netns = "host"\n'
        "[engine]\n"
        'runtime = "runc"\n'  # crun refuses hybrid cgroups
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    return path


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (deb822 or one-line sources), else deb.debian.org."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"]:
        with contextlib.suppress(OSError):
            text = Path(path).read_text()
            if match := re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, flags=re.M) or re.search(
                r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+\w+", text, flags=re.M
            ):
                return match.group(1)
    return "http://deb.debian.org/debian"


def base_tarball() -> Path:
    """Debian minbase with python3 in a venv at /usr/local (so ``python`` and ``pip`` are on PATH as in
    the python images) and current pip, setuptools and wheel: made once, kept in the cache."""
    tarball = CACHE / f"{DEBIAN_SUITE}-python3.tar"
    if tarball.exists():
        log(f"base image tarball cached: {tarball}")
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        mirror = debian_mirror()
        sh(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates", DEBIAN_SUITE, str(rootfs), mirror],
            timeout=900,
        )
        chroot = ["/usr/sbin/chroot", str(rootfs)]
        clean_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        sh([*chroot, "/usr/bin/python3", "-m", "venv", "/usr/local"], env=clean_env, inherit=False)
        shutil.copy("/etc/ssl/certs/ca-certificates.crt", rootfs / "etc/ssl/certs/host-ca-certificates.crt")
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        pip = [*chroot, "/usr/local/bin/python", "-m", "pip", "install", "--no-cache-dir", "--quiet", "--upgrade"]
        sh([*pip, "pip", "setuptools", "wheel"], env={**clean_env, "PIP_CERT": "/etc/ssl/certs/host-ca-certificates.crt"}, inherit=False)
        (rootfs / "etc/resolv.conf").unlink()
        (rootfs / "etc/ssl/certs/host-ca-certificates.crt").unlink()
        for folder in ("var/cache/apt", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / folder, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        sh(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."])
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def dockerfile_base(dockerfile: Path) -> str:
    """The image the Dockerfile builds ``FROM`` (its ``PYTHON_IMAGE`` argument's default), fully qualified."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile.read_text(), flags=re.M)
    if match is None:
        raise ImageTestError(f"{dockerfile} has no ARG PYTHON_IMAGE=<image>: the image test cannot tell what to build FROM")
    name = match.group(1)
    return name if "/" in name else f"docker.io/library/{name}"


def make_base_image(podman: list[str], name: str, work: Path) -> None:
    """Import the cached Debian base and add this machine's CA bundle and the pinned versions; tag it ``name``."""
    raw = f"localhost/hml-image-test/{DEBIAN_SUITE}-python3"
    if subprocess.run([*podman, "image", "exists", raw], check=False).returncode != 0:
        sh([*podman, "import", "--change", 'CMD ["python"]', str(base_tarball()), raw], timeout=600)
    context = work / "base"
    context.mkdir()
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", context / "ca-certificates.crt")
    shutil.copy(ROOT / "constraints.txt", context / "constraints.txt")
    (context / "pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nconstraint = /etc/pip-constraints.txt\n")
    (context / "Containerfile").write_text(
        f"FROM {raw}\n"
        "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
        "COPY constraints.txt /etc/pip-constraints.txt\n"
        "COPY pip.conf /etc/pip.conf\n"
    )
    sh([*podman, "build", "--quiet", "--pull=never", "-t", name, str(context)], timeout=300)


@contextlib.contextmanager
def podman_service(socket_path: Path, env: dict[str, str]) -> Iterator[str]:
    """``podman system service`` on ``socket_path``; yields its DOCKER_HOST; stopped by PID on exit."""
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket_path}"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    host = f"unix://{socket_path}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(socket_path):
            if service.poll() is not None:
                raise ImageTestError(f"podman system service exited with {service.returncode}: {service.stderr.read()!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise ImageTestError(f"podman system service did not answer on {socket_path} within 60s")
            time.sleep(0.2)
        log(f"podman service (pid {service.pid}) on {host}")
        yield host
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
        log(f"podman service (pid {service.pid}) stopped")


def _answers(socket_path: Path) -> bool:
    """Whether the API on the unix socket answers ``GET /_ping`` with 200."""
    if not socket_path.exists():
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            return sock.recv(64).split(b"\r\n")[0].split()[1:2] == [b"200"]
        except OSError:
            return False


# ------------------------------------------------------------------------------------------------ checks
class Containers:
    """Runs containers with a label of this run, so every one of them can be removed on exit."""

    def __init__(self, podman: list[str], image: str) -> None:
        self.podman, self.image = podman, image
        self.label = f"hml-image-test={uuid.uuid4().hex[:12]}"

    def run(self, *args: str, options: Sequence[str] = (), timeout: float = 600) -> str:
        return sh([*self.podman, "run", "--rm", "--pull=never", "--label", self.label, *options, self.image, *args], timeout=timeout)

    def start(self, name: str, *args: str, options: Sequence[str] = ()) -> str:
        sh([*self.podman, "run", "-d", "--pull=never", "--name", name, "--label", self.label, *options, self.image, *args])
        return name

    def remove_all(self) -> None:
        listed = subprocess.run(
            [*self.podman, "ps", "-a", "-q", "--filter", f"label={self.label}"], capture_output=True, text=True, check=False
        )
        for container in listed.stdout.split():
            subprocess.run([*self.podman, "rm", "-f", "-t", "5", container], capture_output=True, check=False)
            log(f"removed container {container}")


def shared_folder(path: Path) -> Path:
    """A folder the image's non-root user can write, for a volume."""
    path.mkdir(parents=True)
    path.chmod(0o777)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, *, timeout: float = 30) -> tuple[int, Any]:
    """``GET url``: the status and the JSON body (also of a 4xx/5xx answer)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def published(lake: Path) -> dict[str, Any]:
    """The reference JSON that the lake's only ``current.json`` points at, with its URIs mapped to ``lake``."""
    pointers = sorted(lake.glob("models/*/*/current.json"))
    if len(pointers) != 1:
        raise ImageTestError(f"expected one published model in {lake}, found {[str(p) for p in pointers]}")
    reference_uri = json.loads(pointers[0].read_text())["reference"]
    reference = json.loads(_in(lake, reference_uri).read_text())
    for artifact in reference["artifacts"].values():
        artifact["path"] = _in(lake, artifact["uri"])
    return dict(reference)


def _in(lake: Path, uri: str) -> Path:
    """A lake URI as a container or this machine wrote it, as a path under ``lake``."""
    for prefix in (LAKE + "/", str(lake) + "/"):
        if uri.startswith(prefix):
            return lake / uri[len(prefix) :]
    raise ImageTestError(f"{uri} is not in the lake {lake}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_image(containers: Containers, baked: Path, pipeline: str, work: Path) -> None:
    podman = containers.podman
    help_text = containers.run("--help")
    check("pipelines" in help_text and "inference" in help_text, "--help lists the pipelines and inference commands")
    inspected = json.loads(sh([*podman, "image", "inspect", containers.image]))[0]
    config = inspected["Config"]
    check(config.get("User") not in (None, "", "0", "root"), f"the image's user is not root (User={config.get('User')!r})")
    check(containers.run("-u", options=["--entrypoint", "id"]).strip() != "0", "its process runs with a non-zero uid")
    healthcheck = inspected.get("Healthcheck") or {}
    check(bool(healthcheck.get("Test")), f"the image keeps its HEALTHCHECK ({healthcheck.get('Test')})")

    lake = shared_folder(work / "lake-run-all")
    lake_options = ["-v", f"{lake}:{LAKE}", "-e", f"HML_LAKE_URL={LAKE}", "-e", f"HML_GIT_COMMIT={TAG}"]
    run_id = containers.run("pipelines", pipeline, "run-all", options=lake_options, timeout=900).strip().splitlines()[-1]
    reference = published(lake)
    check(reference["run_id"] == run_id, f"run-all in the image published run {run_id} to the mounted lake")

    port = free_port()
    server = containers.start(
        f"hml-image-test-serve-{uuid.uuid4().hex[:8]}", options=[*lake_options, "--network", "bridge", "-p", f"127.0.0.1:{port}:8000"]
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        state = json.loads(sh([*podman, "inspect", server], quiet=True))[0]["State"]
        if not state["Running"]:
            raise ImageTestError(f"the server container exited with {state['ExitCode']}: {sh([*podman, 'logs', server])}")
        with contextlib.suppress(OSError, ValueError):
            if get(f"{base}/readyz", timeout=10)[0] == 200:
                break
        if time.monotonic() > deadline:
            raise ImageTestError(f"run-prod in the image never answered /readyz within 120s: {sh([*podman, 'logs', server])}")
        time.sleep(0.5)
    log(f"run-prod in the image is ready on {base}")
    # the README's example asks the package for a request (`inference example --query`): ask the image the same
    readme = (baked / "README.md").read_text()
    example = re.search(r'curl "http://127\.0\.0\.1:8000/predict\?\$\((\S+) inference example --query\)"', readme)
    if example is None:
        raise ImageTestError("the baked README shows no `curl` example that asks `<package> inference example --query` for its request")
    query = containers.run("inference", "example", "--query", options=lake_options).strip()
    check(bool(query) and "\n" not in query, f"`{example.group(1)} inference example --query` in the image prints one query: {query}")
    status, answer = get(f"{base}/predict?{query}")
    check(status == 200 and len(answer["predictions"]) == 1, f"/predict with the README's example answers one prediction: {answer}")
    check(answer["model"]["version"] == run_id, f"... from the model run-all published ({answer['model']['version']})")
    status, answer = get(f"{base}/predict?age=not-a-number")
    check(400 <= status < 500 and "error" in answer, f"a malformed request gets a JSON {status}: {answer}")
    health = subprocess.run([*podman, "healthcheck", "run", server], capture_output=True, text=True, check=False)
    state = json.loads(sh([*podman, "inspect", server], quiet=True))[0]["State"]
    health_status = (state.get("Health") or state.get("Healthcheck") or {}).get("Status")
    check(
        health.returncode == 0 and health_status == "healthy",
        f"its HEALTHCHECK reports {health_status!r} ({health.stdout.strip() or health.stderr.strip()})",
    )
    sh([*podman, "stop", "-t", "30", server], timeout=60)
    state = json.loads(sh([*podman, "inspect", server], quiet=True))[0]["State"]
    check(state["ExitCode"] == 0, f"it stops cleanly on SIGTERM (exit code {state['ExitCode']})")


def check_parity(containers: Containers, baked: Path, pipeline: str, work: Path) -> None:
    """The compiled spec's command lines, one container per step, publish the model run-all publishes here."""
    import yaml

    from hmlcore.pipelines.launcher import dag_order, pipeline_params, resolve_command

    entrypoint = f"import sys; from {package_name(baked)}.start import main; sys.argv[0] = 'entrypoint'; main()"
    host_env = {"PYTHONPATH": str(baked), "HML_IMAGE": containers.image, "HML_GIT_COMMIT": TAG, "HML_HOME": str(work / "host-home")}
    spec_file = work / f"{pipeline}.yaml"
    sh([sys.executable, "-c", entrypoint, "pipelines", pipeline, "compile", "-o", str(spec_file)], env=host_env, cwd=work)
    sh([sys.executable, "-c", entrypoint, "pipelines", pipeline, "run-all"], env=host_env, cwd=work, timeout=900)
    on_host = published(work / "host-home" / "lake")

    spec = next(yaml.safe_load_all(spec_file.read_text()))
    params = pipeline_params(spec, {})
    lake = shared_folder(work / "lake-steps")
    run_id = f"kfp-{uuid.uuid4().hex[:12]}"
    outputs: dict[str, str] = {}
    for task in dag_order(spec):
        executor = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
        container = spec["deploymentSpec"]["executors"][executor]["container"]
        if container["image"] != containers.image:
            raise ImageTestError(f"step {task} runs in {container['image']}, not the image built here ({containers.image})")
        command = resolve_command(spec, task, params=params, outputs=outputs, output_file="/kfp/outputs/output", run_id=run_id)
        output_dir = shared_folder(work / "steps" / task)
        options = ["--network", "none", "--tmpfs", "/tmp:rw,mode=1777", "-v", f"{lake}:{LAKE}", "-v", f"{output_dir}:/kfp/outputs"]
        # the spec's env, but the lake on the shared volume: it stands in for the cluster's object store, which a
        # container without a network cannot reach (tests/test_s3_cluster.py runs the same steps against SeaweedFS)
        env = {variable["name"]: variable.get("value", "") for variable in container.get("env", [])}
        env |= {"HML_PLATFORM": "local", "HML_LAKE_URL": LAKE, "HML_GIT_COMMIT": TAG}
        options += ["--entrypoint", command[0]] + [option for name, value in env.items() for option in ("-e", f"{name}={value}")]
        containers.run(*command[1:], options=options, timeout=900)
        if (output_dir / "output").exists():
            outputs[task] = (output_dir / "output").read_text()
        log(f"step {task} ran in its own container")
    in_containers = published(lake)
    model, host_model = in_containers["artifacts"]["model"], on_host["artifacts"]["model"]
    check(sha256(model["path"]) == model["sha256"], f"the model the steps published matches its reference ({model['sha256'][:12]})")
    check(
        model["sha256"] == host_model["sha256"],
        f"one container per step publishes the model run-all publishes on the host (sha256 {model['sha256'][:12]}"
        f" == {host_model['sha256'][:12]})",
    )


def _exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0


def package_name(baked: Path) -> str:
    (start,) = baked.glob("*/start.py")
    return start.parent.name


# -------------------------------------------------------------------------------------------------- main
def main() -> int:
    if os.environ.get("HML_SKIP_IMAGE_TEST"):
        print("*" * 100 + "\nimage test SKIPPED because HML_SKIP_IMAGE_TEST is set: the image was not built or run\n" + "*" * 100)
        return 0
    # a SIGTERM or SIGHUP (CI cancelled) unwinds like Ctrl-C, so containers and the service are removed
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    install_tools()
    work = Path(tempfile.mkdtemp(prefix="hml-image-test-"))
    containers: Containers | None = None
    try:
        env = {"CONTAINERS_CONF": str(containers_conf(work)), "BUILDAH_FORMAT": "docker"}
        os.environ.update(env)
        podman = ["podman"]
        # images left untagged by earlier runs (older code): a day's worth stays as the layer cache
        sh([*podman, "image", "prune", "--force", "--filter", "until=24h"], timeout=300)
        sh([sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(work / "bake"), str(ROOT)])
        (baked,) = (work / "bake").iterdir()
        make_base_image(podman, dockerfile_base(baked / "app.Dockerfile"), work)
        pipeline = re.search(r"^PIPELINE := (\S+)$", (baked / "Makefile").read_text(), flags=re.M)
        image = re.search(r"^IMAGE\s+\?= (\S+)$", (baked / "Makefile").read_text(), flags=re.M)
        if pipeline is None or image is None:
            raise ImageTestError("the baked Makefile names no PIPELINE or IMAGE")
        with podman_service(work / "podman.sock", env) as docker_host:
            docker = "docker" if shutil.which("docker") else "podman"
            if docker == "podman":
                log("no docker CLI here: make image builds with DOCKER=podman")
            # no HMLCORE: the image gets the hmlcore the bake pinned (the wheel a bake from this folder builds)
            make = ["make", "-C", str(baked), "image", f"TAG={TAG}", f"PYTHON={sys.executable}", f"DOCKER={docker}"]
            # fixed timestamps in the wheels: the same code gives the same wheels, so podman's layer cache holds
            sh(make, env={"DOCKER_HOST": docker_host, "SOURCE_DATE_EPOCH": "315532800"}, timeout=1200)
        built = [name for name in (f"docker.io/library/{image.group(1)}:{TAG}", f"localhost/{image.group(1)}:{TAG}") if _exists(name)]
        if not built:
            raise ImageTestError(f"make image finished, but podman has no image {image.group(1)}:{TAG}")
        log(f"image built: {built[0]}")
        containers = Containers(podman, built[0])
        check_image(containers, baked, pipeline.group(1), work)
        check_parity(containers, baked, pipeline.group(1), work)
    except ImageTestError as error:
        print(f"image test FAILED: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("image test interrupted", file=sys.stderr)
        return 130
    finally:
        if containers is not None:
            containers.remove_all()
        shutil.rmtree(work, ignore_errors=True)
    log("image test passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
