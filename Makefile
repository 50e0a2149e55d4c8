# pulsetrain developer targets. `make help` lists them; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(shell $(PYTHON) hack/venv.py --print-only)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
LINT_PATHS := workers operator tests bench hack

.DEFAULT_GOAL := help
.PHONY: run-operator help venv tools lint unit render test bench bench-operator testbed-up testbed-down testbed-status clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

venv: ## Create the cached Python environment (keyed by pyproject.toml)
	@$(PYTHON) hack/venv.py >/dev/null

tools: venv ## Build/download the test bed's tools into ~/.cache/pulsetrain (cached)
	@$(PY) -m tests.cluster install

lint: venv ## ruff and mypy --strict
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m mypy --strict $(LINT_PATHS)

unit: venv ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

render: venv ## Regenerate the CRD manifests from operator/pulsetrain_operator/crd.py
	$(PY) hack/render_manifests.py

test: tools ## Everything: unit, integration and e2e tests on the real test bed (starts and stops it)
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: tools ## Trainer benchmarks against same-run baselines (starts the test bed if needed; ~10 min)
	@$(PY) -m tests.cluster up >/dev/null
	$(PY) -m bench.run $(BENCH_ARGS)

bench-operator: tools ## Operator: 200 pipelines to pods, p99 and RSS against a direct-create floor (~2 min)
	@$(PY) -m tests.cluster up >/dev/null
	$(PY) -m bench.operator_bench $(BENCH_ARGS)

run-operator: venv ## Run the operator in the foreground against the KUBECONFIG cluster (OPERATOR_ARGS=--namespace ml)
	$(PY) -m pulsetrain_operator --log-format full $(OPERATOR_ARGS)

testbed-up: tools ## Start the test bed and leave it running (tests then reuse it)
	@$(PY) -m tests.cluster up

testbed-down: venv ## Stop the test bed and remove its pod network
	@$(PY) -m tests.cluster down

testbed-status: venv ## Which test-bed servers are running
	@$(PY) -m tests.cluster status

clean: ## Remove Python caches in the checkout (the tool cache is kept)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .mypy_cache .ruff_cache .pytest_cache
