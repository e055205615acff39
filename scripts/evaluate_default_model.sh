#!/usr/bin/env bash
# `make results`: the README's results tables, rerunnable by anyone.
#   1. simulate the seeded test collection (configs/datasets/test.yaml, seeds training never
#      uses) into data/test
#   2. evaluate models/default.pt on it: every exit with all sensors, then each detection sensor
#      alone; JSON, markdown tables and plots in models/results/
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MODEL=${MODEL:-models/default.pt}
# Rebuilt when missing or older than its recipe or any scenario (a stale set would misreport).
if [ ! -f data/test/collection.json ] || \
   [ -n "$(find configs/datasets/test.yaml configs/scenarios -newer data/test/collection.json)" ]; then
    $PY -m dyn_fusion.cli make-dataset --recipe configs/datasets/test.yaml --out data/test --overwrite
fi
$PY -m dyn_fusion.cli evaluate --checkpoint "$MODEL" --data data/test --single-sensors \
    --json models/results/default_eval.json --markdown models/results/default_results.md --plots models/results
