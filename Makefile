# The two commands a new user needs: `make run` and `make test`. Both create .venv and install.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
STUDIO_PORT ?= 2124
export LANGGRAPH_CLI_NO_ANALYTICS=1
export LANGGRAPH_NO_VERSION_CHECK=true

.PHONY: install run test pytest lint format studio openapi graph eval bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## run: migrate, seed and serve on PORT (embedded defaults unless DATABASE_URL etc. are set)
run: install
	PORT=$(PORT) $(VENV)/bin/resolver serve

## test: lint, the test suite (real PostgreSQL and Redis on this machine), and the eval replay
test: install lint eval pytest

pytest: install
	$(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## studio: LangGraph Studio's dev server on STUDIO_PORT (2024 is taken on these machines)
studio: install
	$(VENV)/bin/langgraph dev --no-browser --no-reload --port $(STUDIO_PORT)

openapi: install
	$(VENV)/bin/resolver openapi docs/api/openapi.yaml

graph: install
	$(VENV)/bin/resolver graph docs/graph.md

eval: install
	$(PY) -m evals.run

## bench: start the service on the embedded defaults, then measure it
bench: install
	$(PY) bench/run_all.py

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
