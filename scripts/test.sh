#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, formatting, strict typing, and the whole suite.
# Each check is its own statement: under `set -e` a failure inside an `a && b` list does not
# stop the script, so chaining the checks with && once let a lint error through to a green run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== node (extension unit tests)"
node --test --test-reporter=dot extension/tests/
echo "== pytest"
# Two workers: most of the suite waits on sockets, subprocesses and browsers, not the CPU.
# NOVELGEN_TEST_WORKERS=0 runs it in one process (e.g. to debug with -s or --pdb).
.venv/bin/python -m pytest -n "${NOVELGEN_TEST_WORKERS:-2}" --dist loadgroup "$@"
