# `make run` and `make test` each set up everything on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
SAMPLE := data/sample.parquet
SAMPLE_ROWS ?= 200000

.PHONY: venv run test lint typecheck unit compiled clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(SAMPLE): | venv
	$(BIN)/mlpipe data synth --rows $(SAMPLE_ROWS) --out $(SAMPLE) --seed 7

run: venv $(SAMPLE)
	$(BIN)/mlpipe run --data $(SAMPLE)

lint: venv
	$(BIN)/ruff check steps workflows serving tests benchmarks
	$(BIN)/ruff format --check steps workflows serving tests benchmarks

typecheck: venv
	$(BIN)/mypy steps workflows serving

unit: venv
	$(BIN)/pytest

test: lint typecheck unit

# The committed manifests; tests/test_manifests.py fails when they drift from the Hera code.
compiled: venv
	$(BIN)/mlpipe compile --out workflows/compiled

clean:
	rm -rf $(VENV) .mlpipe data
