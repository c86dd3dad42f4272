#!/usr/bin/env bash
# Set up, then run every check CI runs: lint, formatting, strict typing, and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --tests
echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy" && .venv/bin/mypy
echo "== node (extension unit tests)" && node --test --test-reporter=dot extension/tests/
echo "== pytest" && .venv/bin/python -m pytest "$@"
