# Entry points: make serve, make test. See README.md.
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PORT ?= 3000
PYTEST_ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: install model serve train build test test-unit lint format clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

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

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
