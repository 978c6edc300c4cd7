# `make run` and `make test` each set up everything on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
SAMPLE := data/sample.parquet
SAMPLE_ROWS ?= 200000

.PHONY: venv run test lint typecheck unit bench clean

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

clean:
	rm -rf $(VENV) .mlpipe data
