# The two commands a new user needs: `make run` and `make test`. Both create .venv and install.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
STUDIO_PORT ?= 2124
CHROMIUM ?= /usr/bin/chromium
CHROMEDRIVER ?= /usr/bin/chromedriver
export LANGGRAPH_CLI_NO_ANALYTICS=1
export LANGGRAPH_NO_VERSION_CHECK=true

.PHONY: install run test pytest browser-deps screenshot lint format studio openapi graph settings-doc eval eval-accuracy verified bench bench-scale bench-cost clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check uv
	$(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## run: migrate, seed and serve on PORT (embedded defaults unless DATABASE_URL etc. are set)
run: install
	PORT=$(PORT) ROLLUPS_ENABLED=$${ROLLUPS_ENABLED:-true} CHANGE_REFRESH=$${CHANGE_REFRESH:-true} $(VENV)/bin/resolver serve

## test: lint, the test suite (real PostgreSQL and Redis on this machine), and the eval replay
test: install lint eval pytest

pytest: install browser-deps
	$(PY) -m pytest -q -p no:cacheprovider

## browser-deps: Debian's chromium + chromium-driver for tests/browser (apt-get, only when missing).
## Never a tool's own browser download. If this fails, make test fails: the suite never skips.
browser-deps:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then :; else \
	  echo "tests/browser needs Debian's chromium and chromium-driver: installing them (apt-get)"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  { $$SUDO apt-get update -q && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
	  || { echo "could not install chromium + chromium-driver: the browser tests cannot run" >&2; exit 1; }; \
	fi

## screenshot: run the browser suite and copy its screenshot to docs/dashboard.png
screenshot: install browser-deps
	$(PY) -m pytest -q -p no:cacheprovider tests/browser
	cp tests/browser/artifacts/dashboard.png docs/dashboard.png

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

## settings-doc: docs/settings.md, the settings reference, generated from service/settings.py::Settings
settings-doc: install
	$(VENV)/bin/resolver settings-doc docs/settings.md

eval: install
	$(PY) -m evals.run

## eval-accuracy: the gold set against the real Bedrock model (BEDROCK_MODEL_ID + AWS credentials);
## without them it says so and fails. Report: evals/reports/accuracy/latest.{json,md}
eval-accuracy: install
	$(PY) -m evals.accuracy

## verified: rerun the differential test on local Spark and rewrite adapters/embedded_verified.json
verified: install
	$(PY) -m tests.differential

## bench: start the service on the embedded defaults, then measure it
bench: install
	$(PY) bench/run_all.py

## bench-scale: 4 instances on the real Redis + PostgreSQL, a ~1 s warehouse, 100 viewers (~3 min)
bench-scale: install
	$(PY) bench/bench_scale.py

## bench-cost: change-driven refresh on and off side by side: 2+2 instances, a ~1 s warehouse, 5 JWT identities (~3 min)
bench-cost: install
	$(PY) bench/bench_cost.py

## bench-rollups: a rollup answer's latency over HTTP (one instance, real Redis + PostgreSQL, embedded DuckDB)
bench-rollups: install
	$(PY) bench/bench_rollups.py

clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
