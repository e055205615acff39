#!/usr/bin/env bash
# `make model`: the shipped default model from nothing, in one command.
#   1. simulate the seeded training collection (configs/datasets/train.yaml) into data/train
#   2. train the default model (configs/{model,train}/default.yaml) into runs/train_default
#   3. copy the final weights to models/default.pt (refused above 20 MB)
# Each phase's wall time is printed and written to models/default_build.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
start=$(date +%s)
$PY -m dyn_fusion.cli make-dataset --recipe configs/datasets/train.yaml --out data/train --overwrite
data_done=$(date +%s)
$PY -m dyn_fusion.cli train --config configs/train/default.yaml --model configs/model/default.yaml \
    --data data/train --out runs/train_default --overwrite
train_done=$(date +%s)
mkdir -p models
size=$(stat -c %s runs/train_default/model.pt)
if [ "$size" -gt $((20 * 1024 * 1024)) ]; then
    echo "model.pt is $size bytes, above the 20 MB limit for models/" >&2
    exit 1
fi
cp runs/train_default/model.pt models/default.pt
cat > models/default_build.json <<JSON
{"command": "make model", "dataset_s": $((data_done - start)), "training_s": $((train_done - data_done)),
 "total_s": $(($(date +%s) - start)), "model_bytes": $size, "cpu_cores": $(nproc)}
JSON
echo "models/default.pt: $size bytes; data $((data_done - start)) s, training $((train_done - data_done)) s, total $(($(date +%s) - start)) s"
