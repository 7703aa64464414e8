# Entry points: make serve, make test. See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PORT ?= 3000
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: install tools model serve train build containerize container-base rehearse bench \
	test test-unit lint format manifests clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

install: $(STAMP)

# checkov lives in its own venv: its pins conflict with the service's dependencies.
$(TOOLS_STAMP): deploy/requirements-checkov.txt
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet -r deploy/requirements-checkov.txt
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# Trains and promotes the default model only when the model store has none.
model: install
	$(PY) -m train ensure

serve: model
	$(BIN)/bentoml serve service:TabularModel --port $(PORT)

# Extra options go in ARGS, e.g. make train ARGS="--data my.csv --target y --promote"
train: install
	$(PY) -m train $(ARGS)

build: model
	$(BIN)/bentoml build

# Container image of the current sources and model: bentoml build if needed, then
# bentoml containerize (docker if its daemon answers, else buildah, else podman).
# IMAGE=name:tag names it (default: the Bento's tag).
containerize: model
	$(PY) -m deploy.container build $(if $(IMAGE),--tag $(IMAGE))

# Only the base image: kept if present, else pulled, else a local Debian stand-in (root).
container-base: install
	$(PY) -m deploy.container base

# Rollout rehearsal: two model versions behind a local nginx under wrk load (needs nginx, wrk).
# Options go in ARGS, e.g. make rehearse ARGS="--step-seconds 5 --connections 8"
rehearse: install
	$(PY) -m deploy.rehearse $(ARGS)

# Ours against plain FastAPI and default BentoML on the same model; results in bench/results/
bench: install
	$(PY) -m bench.harness $(ARGS)

test: install tools
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Render every overlay, validate against two Kubernetes versions, run our checks and checkov.
manifests: install tools
	$(PY) -m deploy.k8s_checks --kube-version 1.30 --kube-version 1.33 \
		deploy/k8s/base deploy/k8s/overlays/*
	rm -rf build/k8s-rendered
	$(PY) -m deploy.k8s_checks --render-to build/k8s-rendered deploy/k8s/overlays/*
	$(TOOLS)/bin/checkov --quiet --config-file deploy/.checkov.yaml -d build/k8s-rendered

clean:
	rm -rf $(VENV) $(TOOLS) build .pytest_cache .ruff_cache *.egg-info
