# One image runs every pipeline step and the inference API.
FROM python:{{ cookiecutter.python_version }}-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY . /app
RUN pip install /app/dist/*.whl 2>/dev/null || pip install . \
    && useradd --create-home --uid 10001 hml
USER hml
ENV HML_HOME=/tmp/hml
EXPOSE 8000
ENTRYPOINT ["{{ cookiecutter.package_name }}"]
CMD ["inference", "run-prod"]
