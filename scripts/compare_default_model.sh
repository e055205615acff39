#!/usr/bin/env bash
# `make compare`: the README's dynamic-fusion table, rerunnable by anyone.
#   1. train the gates of models/default.pt (context head, attention gate, loss predictor) on the
#      gate collection (configs/datasets/gates.yaml: frames the detector never trained on), unless
#      models/default_gates.pt is newer than the model, its config and that recipe
#   2. simulate the seeded test collection into data/test if it is missing or stale
#   3. run every gate mode on it (400 frames spread over every condition, dropout rows on every
#      4th of those): models/results/compare/{compare.json, compare.md, *.png}
#   4. run every gate mode on the held-out fault mixes (configs/datasets/fault_mix_test.yaml) and
#      summarise each mode against static: models/results/fault_mix/{compare.*, summary.md}
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MODEL=${MODEL:-models/default.pt}
GATES=${GATES:-models/default_gates.pt}
fresh() {  # $1 is newer than every later argument
    [ -f "$1" ] && [ -z "$(find "${@:2}" -newer "$1" 2>/dev/null)" ]
}
dataset() {  # $1 recipe name: simulate data/$1 unless it is newer than its recipe and the scenarios
    if ! fresh "data/$1/collection.json" "configs/datasets/$1.yaml" configs/scenarios; then
        $PY -m dyn_fusion.cli make-dataset --recipe "configs/datasets/$1.yaml" --out "data/$1" --overwrite
    fi
}
if ! fresh "$GATES" "$MODEL" configs/gates/default.yaml configs/datasets/gates.yaml; then
    dataset gates
    $PY -m dyn_fusion.cli train-gates --checkpoint "$MODEL" --data data/gates --out "$GATES"
fi
dataset test
$PY -m dyn_fusion.cli compare --checkpoint "$MODEL" --gates "$GATES" --data data/test \
    --max-frames 400 --dropout-every 4 --out models/results/compare
dataset fault_mix_test
$PY -m dyn_fusion.cli compare --checkpoint "$MODEL" --gates "$GATES" --data data/fault_mix_test \
    --out models/results/fault_mix
$PY scripts/robustness_summary.py models/results/fault_mix/compare.json --markdown models/results/fault_mix/summary.md
