# pulsetrain developer targets. `make help` lists them; `make test` is what CI runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(shell $(PYTHON) hack/venv.py --print-only)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
LINT_PATHS := workers operator tests bench hack
# images: the tag is pyproject.toml's version (what the chart's appVersion says)
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml | head -n 1)
OPERATOR_IMAGE ?= pulsetrain/operator
WORKER_IMAGE ?= pulsetrain/worker
TENSORFLOW ?= cpu
DOCKER ?= docker

.DEFAULT_GOAL := help
.PHONY: help venv demo tools lint unit render chart test bench bench-operator bench-predictor run-operator \
        images curve testbed-up testbed-down testbed-status clean

help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

venv: ## Create the cached Python environment (keyed by pyproject.toml)
	@$(PYTHON) hack/venv.py >/dev/null

DEMO_DIR ?= .pulsetrain/digits
demo: venv ## Digits end to end on one machine, no cluster: embedded broker, train, held-out accuracy (~1 min)
	@rm -rf $(DEMO_DIR)
	$(VENV)/bin/pulsetrain produce --pipeline examples/digits.yaml --state-dir $(DEMO_DIR) --dataset digits --split train --repeat 4 --no-progress
	$(VENV)/bin/pulsetrain run examples/digits.yaml --state-dir $(DEMO_DIR)
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) examples/evaluate_digits.py $(DEMO_DIR)/export --min-accuracy 0.95

tools: venv ## Build/download the test bed's tools into ~/.cache/pulsetrain (cached)
	@$(PY) -m tests.cluster install

lint: venv ## ruff and mypy --strict
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m mypy --strict $(LINT_PATHS)

unit: venv ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

render: venv ## Regenerate manifests/, the chart's generated files (CRD, RBAC rules, helm template) and docs/reference.md
	$(PY) hack/render_manifests.py
	$(PY) hack/render_reference.py

chart: venv ## helm lint --strict and helm template of charts/pulsetrain (both RBAC modes), and the drift check
	@set -e; helm="$${HELM:-$$($(PY) -m tests.cluster.tools_go helm)}"; \
	for values in "" "--set watchNamespaces={team-a,team-b}"; do \
		$$helm lint --strict charts/pulsetrain $$values; \
		$$helm template pulsetrain charts/pulsetrain --namespace pulsetrain-system $$values >/dev/null; \
	done; \
	$(PY) hack/render_manifests.py --check && echo "chart: lint, template and drift check passed"

test: tools ## Everything: unit, integration and e2e tests on the real test bed (starts and stops it)
	$(PY) -m pytest tests $(PYTEST_ARGS)

bench: tools ## Trainer benchmarks against same-run baselines (starts the test bed if needed; ~10 min)
	@$(PY) -m tests.cluster up >/dev/null
	$(PY) -m bench.run $(BENCH_ARGS)

bench-operator: tools ## Operator: 200 pipelines to pods, p99 and RSS against a direct-create floor (~2 min)
	@$(PY) -m tests.cluster up >/dev/null
	$(PY) -m bench.operator_bench $(BENCH_ARGS)

bench-predictor: tools ## Predictor: predictions/s and p50/p99 latency through Pulsar vs the model in-process (~1 min)
	@$(PY) -m tests.cluster up >/dev/null
	$(PY) -m bench.predictor_bench $(BENCH_ARGS)

images: ## Build the operator and worker images with docker, tagged with the pyproject version (TENSORFLOW=gpu)
	$(DOCKER) build -f operator/Dockerfile --build-arg VERSION=$(IMAGE_VERSION) -t $(OPERATOR_IMAGE):$(IMAGE_VERSION) .
	$(DOCKER) build -f workers/Dockerfile --build-arg VERSION=$(IMAGE_VERSION) --build-arg TENSORFLOW=$(TENSORFLOW) \
		-t $(WORKER_IMAGE):$(IMAGE_VERSION)$(if $(filter gpu,$(TENSORFLOW)),-gpu) .

curve: tools ## Train digits on the test bed's Pulsar and draw docs/training-curve.svg (loss, samples/s; ~3 min)
	@$(PY) -m tests.cluster up >/dev/null
	$(PY) hack/training_curve.py $(CURVE_ARGS)

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
