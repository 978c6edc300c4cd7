#!/usr/bin/env bash
# Regenerates the images' pinned requirements (with hashes) from the project's venv:
#   images/steps/requirements.txt    the project's dependencies (pyproject.toml)
#   images/serving/requirements.txt  what the model server imports (requirements.in)
#   images/build-requirements.txt    the build backend that builds the project's wheel
# Each is resolved by pip-compile (pip-tools, in the dev extra) against PyPI alone, with
# every version constrained to the one installed in .venv, so the images run what the
# tests ran. Run it after changing dependencies:  make venv && images/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv/bin
# A fixed path, since pip-compile names it in the lock files' annotations.
constraints=.mlpipe/venv-constraints.txt
mkdir -p .mlpipe
"$venv/pip" freeze --exclude-editable >"$constraints"
# PyPI only: no local wheel folders or mirrors from this machine's pip configuration.
export PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_EXTRA_INDEX_URL=
export CUSTOM_COMPILE_COMMAND="images/lock.sh"
compile() {
  "$venv/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links --constraint "$constraints" "$@"
}
compile --output-file images/steps/requirements.txt pyproject.toml
compile --output-file images/serving/requirements.txt images/serving/requirements.in
compile --only-build-deps --build-deps-for wheel --output-file images/build-requirements.txt \
  pyproject.toml
