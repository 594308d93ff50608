# hml-template: `make demo` bakes the default package and runs it end to end; `make test` runs every test;
# `make test-fast` the quick loop (no slow tests); `make image-test` builds and runs the baked package's image;
# `make dist` builds hmlcore's release (sdist and wheel) and checks it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-out
PORT   ?= 8765
DIST   ?= dist
# hmlcore's one version, read from hmlcore/_version.py (pyproject.toml and the baked packages read it there too)
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' hmlcore/_version.py)

.DEFAULT_GOAL := help
.PHONY: help venv install demo test test-fast image-test lint typecheck dist clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python ## install hmlcore and the test tools into $(VENV) (pinned by constraints.txt)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"

demo: install ## bake car-crashes, train it, serve it, print a prediction
	$(BIN)/python scripts/demo.py --output $(DEMO) --port $(PORT)

test: install ## run every test (the slow ones too): what CI runs
	$(BIN)/python -m pytest -m "slow or not slow"

test-fast: install ## the quick loop: every test not marked slow
	$(BIN)/python -m pytest -m "not slow" -q

image-test: install ## build the baked package's image with podman and run it (root on Debian; HML_SKIP_IMAGE_TEST=1 skips)
	$(BIN)/python scripts/image_test.py

lint: install ## ruff and mypy on hmlcore, and its layers (import-linter contracts in pyproject.toml)
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

dist: install ## hmlcore's sdist and wheel in dist/: twine-checked, the wheel installed in a clean venv (TAG=v<version> checks the tag)
	@test -z "$(TAG)" || test "$(TAG)" = "v$(VERSION)" || { echo "the tag $(TAG) does not name hmlcore's version $(VERSION) (hmlcore/_version.py)" >&2; exit 1; }
	rm -rf $(DIST)
	$(BIN)/python -m build --outdir $(DIST) .
	$(BIN)/python -m twine check --strict $(DIST)/*
	@check=$$(mktemp -d) && $(PYTHON) -m venv $$check/venv && \
	  $$check/venv/bin/python -m pip install --quiet $(DIST)/hmlcore-$(VERSION)-py3-none-any.whl && \
	  $$check/venv/bin/python -c "import hmlcore, hmlcore.hml, hmlcore.cli; print('hmlcore', hmlcore.__version__, 'imports with its declared dependencies')"; \
	  status=$$?; rm -rf $$check; exit $$status

clean: ## remove the virtualenv, demo output and dist/
	rm -rf $(VENV) $(DEMO) $(DIST)
