# Altus 4 — `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
T ?= tests

.DEFAULT_GOAL := help
.PHONY: help install services tools migrate demo run test test-stack test-fast fuzz bench bench-scale bench-relevance lint clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { apt-get update -qq && apt-get install -y -qq python3 python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	@touch $@

install: $(VENV)/.installed ## Create the virtualenv and install Altus 4 with its dependencies

services: ## Make sure MySQL/MariaDB and Redis are reachable (starts local ones when none is configured)
	@bash scripts/ensure-services.sh

migrate: install services ## Apply database migrations
	$(VENV)/bin/altus4 migrate

demo: migrate ## Load the demo database and print a fresh demo API key
	export APP_ENV=$${APP_ENV:-development}; [ "$$APP_ENV" != development ] || export ALLOW_OWN_SERVERS=$${ALLOW_OWN_SERVERS:-true}; \
	$(VENV)/bin/altus4 demo

run: install services ## Migrate, load the demo data, print a demo API key, serve on 127.0.0.1:${PORT:-3000}
	@bash scripts/run.sh

tools: ## Install the tools the tests run (nginx, HAProxy, promtool, docker CLI, Node.js/npm)
	@bash scripts/ensure-tools.sh

test: install services tools ## Run the test suite (real MariaDB, Redis, nginx, HAProxy...); T=path narrows it
	$(PY) -m pytest $(T)

test-stack: install ## Deploy swarm-stack.yml on a local one-node swarm and kill/scale/update it under load, then its Galera variant (~12 min with images cached)
	$(PY) tests/stack/run_stack.py

test-fast: install services ## The quick loop: every test not marked slow (no replicas, proxies, fleets or fuzzing)
	$(PY) -m pytest -m "not slow" $(T)

fuzz: install services ## A longer, unseeded schemathesis run over every operation (FUZZ_EXAMPLES=100 per operation)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100} FUZZ_RANDOM=1 $(PY) -m pytest -s tests/test_fuzz.py

bench: install services ## Performance benchmark on two data profiles (own, anchor-shop): raw MySQL vs Altus 4 uncached/cached vs /health (~8 min)
	$(VENV)/bin/pip install -q -r bench/requirements.txt
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends wrk >/dev/null)  # the HTTP load generator
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/structured.py  # filter, facets, sort and browse beside plain search (anchor-shop)
	$(PY) bench/galera.py  # writes on a three-node Galera cluster beside a single server

bench-scale: install services ## Vectors and BM25 at 100k and 1M rows: ANN vs exact, recall, memory per node, first searches (~25 min)
	$(PY) bench/scale.py $(BENCH_ARGS)

bench/.venv-embed/.installed: bench/requirements-embedding.txt
	$(PYTHON) -m venv bench/.venv-embed
	bench/.venv-embed/bin/pip install -q torch==2.13.0
	bench/.venv-embed/bin/pip install -q -r bench/requirements-embedding.txt
	@touch $@

bench-relevance: install services bench/.venv-embed/.installed ## SciFact relevance per search mode (SPLIT=dev)
	$(PY) bench/relevance.py --split $${SPLIT:-dev}

lint: install ## ruff check, ruff format --check, mypy on altus4/
	$(VENV)/bin/ruff check altus4 tests app.py config bench
	$(VENV)/bin/ruff format --check altus4 tests app.py config bench
	$(VENV)/bin/mypy

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
