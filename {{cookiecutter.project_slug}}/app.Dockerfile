# syntax=docker/dockerfile:1
# One image runs every pipeline step and the inference API.
# Build it with `make image`: the Makefile first puts the package's and hmlcore's wheels in build/wheels/.
ARG PYTHON_IMAGE=python:{{ cookiecutter.python_version }}-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY build/wheels/ /src/wheels/
WORKDIR /src/wheels
# hmlcore's wheel and this package's other requirements (requirements.txt, from `make wheels`) with every
# dependency as wheels, so the runtime stage installs without an index or a compiler
RUN pip wheel --wheel-dir /wheels --requirement requirements.txt \
    && sha256sum /wheels/*.whl /src/wheels/*.whl > /wheels.sha256

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HML_HOME=/tmp/hml \
    HML_WARM=false
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin hml
# the digests of the wheels installed below: a layer cache (podman's, buildah's) that keys the install on its
# command alone would otherwise keep an image of older code; copying them makes new wheels a new layer
COPY --from=build /wheels.sha256 /usr/local/share/{{ cookiecutter.package_name }}/wheels.sha256
# those wheels, then the package's own without its dependencies (its pyproject may name hmlcore by a git URL)
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/wheels,target=/src/wheels \
    pip install --no-index --no-deps /wheels/*.whl /src/wheels/{{ cookiecutter.package_name }}-*.whl && pip check
USER 10001
WORKDIR /home/hml
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["{{ cookiecutter.package_name }}"]
CMD ["inference", "run-prod"]
