#!/usr/bin/env bash
# Set up, then run the simulated demo: the 300-panel sample script, its prompts composed from
# the sample style bible (examples/the-lighthouse-keeper.bible.toml), with 5 simulated workers.
# Extra arguments go to `novelgen run` (e.g. --sim-failure-rate 0.1 --sim-rate-limit-rate 0.02).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/novelgen run examples/the-lighthouse-keeper.script \
    --style examples/the-lighthouse-keeper.bible.toml --simulate --workers 5 \
    --out demo-output "$@"
