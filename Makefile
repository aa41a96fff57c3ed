# snapcopy: two commands matter — `make demo` and `make test`. Both set everything up.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup lint test test-fast reliability bench demo serve emulator clean

$(PY_STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# checkov (and shellcheck) for tests/test_infra.py, in their own venv: checkov's pins clash with ours.
$(TOOLS_STAMP): infra/requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r infra/requirements-tools.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(PY_STAMP) $(NODE_STAMP)  ## venv + pip packages + Azurite (pinned, in ./node_modules)

lint: setup  ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(TOOLS_STAMP)  ## lint, then pytest (the tests start Azurite and the ARM emulator themselves and stop them)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: setup  ## the pure core, codecs and parsers only (no Azurite, emulator or external tools): seconds
	$(VENV)/bin/pytest -q -m "not azurite and not emulator and not slow"

reliability: setup  ## the fault-injection matrices: CopyStart (200 seeds) and the diff method (20 seeds), about 10 min; docs/reliability*-latest.json
	$(PY) -m local.chaos --seeds 200
	$(PY) -m local.chaos_diff --seeds 20

bench: setup  ## schedule quality and cost in simulated time vs a naive baseline (7 to 9 min on 2 CPUs; --quick under 1 min): bench/results, docs/benchmarks.md
	$(PY) -m local.bench

demo: setup  ## 3 disks x 4 snapshots eastus2 -> westus3, policies, one disk both ways (CopyStart + diff), against Azurite + the emulator
	$(PY) -m local.demo

serve: setup  ## the offline world behind a local HTTP front door: prints SNAPCOPY_URL/KEY for curl and the CLI
	$(PY) -m local.gateway

emulator: setup  ## run the ARM emulator alone (prints its URL and CA path)
	$(PY) -m local.emulator

clean:
	rm -rf $(VENV) $(TOOLS_VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .hypothesis
