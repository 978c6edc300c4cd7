# `make run` and `make test` each set up everything on a fresh machine: the venv holds exactly
# the versions in uv.lock (hash-checked), never the newest ones pyproject.toml allows.
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
SAMPLE := data/sample.parquet
SAMPLE_ROWS ?= 200000
# uv never looks for or downloads another Python: the venv's interpreter is the one.
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: venv checkov lock run test lint typecheck pytest unit integration e2e compiled clean

venv: $(VENV)/.installed

# uv itself is pinned in uv.lock (dev group) with its hashes: pip installs that exact wheel,
# then uv installs the rest of the lock (`--frozen`: the lock as written, never re-resolved).
$(UV): uv.lock
	python3 -m venv $(VENV)
	python3 -c 'import tomllib; p = next(p for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"); print("uv==" + p["version"], *("--hash=" + w["hash"] for w in p["wheels"]))' >$(VENV)/uv-requirement.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(VENV)/uv-requirement.txt
	touch $@

# Bytecode is compiled at install: where PYTHONDONTWRITEBYTECODE is set (CI runners, containers)
# Python would otherwise compile pandas, xgboost and great_expectations from source in every
# step process, seconds each (`import great_expectations` 7.1 s without .pyc files).
$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet --compile-bytecode
	touch $@

# checkov (tests/integration/workflows/test_checkov.py) pins numpy/xgboost below the project's lock, so it gets its
# own venv, installed from its own hash-locked file (tests/support/checkov/requirements.in says how
# to refresh it).
CHECKOV_VENV := .venv-checkov
checkov: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed: tests/support/checkov/requirements.txt | venv
	rm -rf $(CHECKOV_VENV)
	$(UV) venv --quiet --python $(PY) $(CHECKOV_VENV)
	$(UV) pip install --quiet --require-hashes --python $(CHECKOV_VENV)/bin/python -r tests/support/checkov/requirements.txt
	touch $@

# Refresh the lock on purpose (newest versions pyproject.toml allows), then the images' locks.
lock: $(UV)
	$(UV) lock --upgrade
	$(MAKE) images-lock

# The images install from the same lock: the steps image the project's dependencies, the
# serving image only the serving group, both builds the pinned build backend.
images-lock: $(UV)
	$(UV) export --frozen --quiet --no-default-groups --no-emit-project --output-file images/steps/requirements.txt
	$(UV) export --frozen --quiet --only-group serving --no-emit-project --output-file images/serving/requirements.txt
	$(UV) export --frozen --quiet --only-group build --no-emit-project --output-file images/build-requirements.txt

$(SAMPLE): | venv
	$(BIN)/mlpipe data synth --rows $(SAMPLE_ROWS) --out $(SAMPLE) --seed 7

run: venv $(SAMPLE)
	$(BIN)/mlpipe run --data $(SAMPLE)

lint: venv
	$(BIN)/ruff check steps workflows serving tests benchmarks
	$(BIN)/ruff format --check steps workflows serving tests benchmarks

typecheck: venv
	$(BIN)/mypy steps workflows serving

# Every test: unit, integration and end to end (see README, "Tests").
pytest: venv checkov
	$(BIN)/pytest

# In one process, without SeaweedFS: seconds per stage, under 90 s in all.
unit: venv
	$(BIN)/pytest tests/unit

# Real SeaweedFS, real step and CLI processes, real servers.
integration: venv checkov
	$(BIN)/pytest tests/integration

# The whole pipeline through the local engine.
e2e: venv
	$(BIN)/pytest tests/e2e

test: lint typecheck pytest

# The committed manifests (what a cluster gets); tests/unit/workflows/test_manifests.py fails
# when they drift from the Hera code.
compiled: venv
	$(BIN)/mlpipe compile --config config/cluster.yaml --out workflows/compiled

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .mlpipe data
