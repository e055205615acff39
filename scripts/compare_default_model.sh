#!/usr/bin/env bash
# `make compare`: the README's dynamic-fusion table, rerunnable by anyone.
#   1. train the gates of models/default.pt (context head, attention gate, loss predictor) on the
#      training collection, unless models/default_gates.pt is newer than the model and its config
#   2. simulate the seeded test collection into data/test if it is missing or stale
#   3. run every gate mode on it (400 frames spread over every condition, dropout rows on every
#      4th of those): models/results/compare/{compare.json, compare.md, *.png}
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
MODEL=${MODEL:-models/default.pt}
GATES=${GATES:-models/default_gates.pt}
fresh() {  # $1 is newer than every later argument
    [ -f "$1" ] && [ -z "$(find "${@:2}" -newer "$1" 2>/dev/null)" ]
}
if ! fresh "$GATES" "$MODEL" configs/gates/default.yaml; then
    if ! fresh data/train/collection.json configs/datasets/train.yaml configs/scenarios; then
        $PY -m dyn_fusion.cli make-dataset --recipe configs/datasets/train.yaml --out data/train --overwrite
    fi
    $PY -m dyn_fusion.cli train-gates --checkpoint "$MODEL" --data data/train --out "$GATES"
fi
if ! fresh data/test/collection.json configs/datasets/test.yaml configs/scenarios; then
    $PY -m dyn_fusion.cli make-dataset --recipe configs/datasets/test.yaml --out data/test --overwrite
fi
$PY -m dyn_fusion.cli compare --checkpoint "$MODEL" --gates "$GATES" --data data/test \
    --max-frames 400 --dropout-every 4 --out models/results/compare
