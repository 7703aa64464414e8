# Entry points: make serve, make test. See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PORT ?= 3000
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
# Lock files with hashes, written by `make lock`: the runtime one (bentofile.yaml's too), the
# dev one (runtime + the dev, bench and spark extras at the same versions) and checkov's.
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
TOOLS_LOCK := deploy/requirements-checkov.lock
KSERVE := .venv-kserve
KSERVE_STAMP := $(KSERVE)/.installed
KSERVE_LOCK := tests/clients/requirements-kserve.lock
LOCK_ARGS ?=

.PHONY: install lock tools kserve-client model serve train build containerize container-base rehearse bench prometheus-rule \
	screenshots stream \
	test test-unit lint format manifests clean

# Exactly what the dev lock pins, each file checked against its hash (--no-deps: the lock is
# complete, and pip's resolver rejects extras such as pandas[parquet] in hash mode, pypa/pip#9644);
# then the project itself, built without isolation by the setuptools the lock pins, so nothing
# unlocked is downloaded; pip check confirms the set is consistent.
$(STAMP): $(LOCK) $(DEV_LOCK) pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# Rewrites the lock files from pyproject.toml (and the checkov and KServe client .txt files) with the
# uv the dev lock pins: Python 3.11, Linux x86_64 (glibc >= 2.28), wheels only. Pins still
# allowed are kept; LOCK_ARGS=--upgrade (or --upgrade-package NAME) moves them. The dev lock
# also pins [build-system] requires, for the install above, and uv itself.
LOCK_COMPILE = $(BIN)/uv pip compile --quiet --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --only-binary :all: --no-binary pyspark --generate-hashes \
	--custom-compile-command "make lock" $(LOCK_ARGS)

lock: install
	$(LOCK_COMPILE) pyproject.toml -o $(LOCK)
	{ $(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'; \
		echo 'uv>=0.13,<0.14'; } | \
		$(LOCK_COMPILE) pyproject.toml - --extra dev --extra bench --extra spark --constraint $(LOCK) -o $(DEV_LOCK)
	$(LOCK_COMPILE) deploy/requirements-checkov.txt -o $(TOOLS_LOCK)
	$(LOCK_COMPILE) tests/clients/requirements-kserve.txt -o $(KSERVE_LOCK)

# checkov lives in its own venv: its pins conflict with the service's dependencies.
$(TOOLS_STAMP): $(TOOLS_LOCK)
	test -x $(TOOLS)/bin/python || python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(TOOLS_LOCK)
	$(TOOLS)/bin/python -m pip check
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP)

# KServe's client lives in its own venv too (it pins psutil<6, BentoML pins psutil 7).
$(KSERVE_STAMP): $(KSERVE_LOCK)
	test -x $(KSERVE)/bin/python || python3 -m venv $(KSERVE)
	$(KSERVE)/bin/python -m pip install --quiet --require-hashes --no-deps -r $(KSERVE_LOCK)
	$(KSERVE)/bin/python -m pip check
	touch $(KSERVE_STAMP)

kserve-client: $(KSERVE_STAMP)

# Trains and promotes the default model only when the model store has none.
model: install
	$(PY) -m train ensure

serve: model
	$(BIN)/bentoml serve service:TabularModel --port $(PORT)

# The stream consumer (docs/streaming.md): REDIS_URL and the STREAM_* settings from the environment
stream: model
	$(PY) -m serving.stream

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
	$(PY) -m bench.rehearse $(ARGS)

# docs/images: the drift report page and the Evidently UI dashboard after three drift runs
# (needs chromium)
screenshots: install
	$(PY) -m bench.screenshots --out docs/images

# Ours against plain FastAPI and default BentoML on the same model; results in bench/results/
bench: install
	$(PY) -m bench.harness $(ARGS)

test: install tools kserve-client
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

# ruff; the layers (import contracts in pyproject.toml); the CI workflow (zizmor, offline,
# every finding at any severity fails)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/zizmor --offline --strict-collection --no-progress --persona pedantic \
		--min-severity informational --min-confidence low .github/workflows

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The PrometheusRule of the Prometheus Operator component, from deploy/prometheus/alerts.yml.
prometheus-rule: install
	$(PY) -m deploy.prometheus_rule

# Render every overlay, validate against two Kubernetes versions, run our checks and checkov.
manifests: install tools
	$(PY) -m deploy.k8s_checks --kube-version 1.30 --kube-version 1.33 \
		deploy/k8s/base deploy/k8s/overlays/* deploy/k8s/spark deploy/k8s/kserve
	rm -rf build/k8s-rendered
	$(PY) -m deploy.k8s_checks --render-to build/k8s-rendered deploy/k8s/overlays/*
	$(TOOLS)/bin/checkov --quiet --config-file deploy/.checkov.yaml -d build/k8s-rendered

clean:
	rm -rf $(VENV) $(TOOLS) $(KSERVE) build .pytest_cache .ruff_cache *.egg-info
