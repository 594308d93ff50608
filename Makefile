# hml-template: `make demo` bakes the default package and runs it end to end; `make test` runs every test;
# `make test-fast` the quick loop (no slow tests); `make image-test` builds and runs the baked package's image.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO   ?= demo-out
PORT   ?= 8765

.DEFAULT_GOAL := help
.PHONY: help venv install demo test test-fast image-test lint typecheck clean

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

clean: ## remove the virtualenv and demo output
	rm -rf $(VENV) $(DEMO)
