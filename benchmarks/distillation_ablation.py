"""Self-distillation on vs off: mAP per exit of two models trained identically except for
``distill_weight`` (configs/train/default.yaml vs configs/train/no_distill.yaml), on the seeded
test collection. The target: distillation must not lower the last exit.

    .venv/bin/dyn-fusion train --config configs/train/no_distill.yaml --data data/train --out runs/train_no_distill
    .venv/bin/python benchmarks/distillation_ablation.py [--with-distill models/default.pt]
        [--without-distill runs/train_no_distill/model.pt] [--data data/test]

Writes benchmarks/results/distillation_ablation.json and prints a markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_result
from fusion_core.data.open_source import open_source
from fusion_core.evaluation.report import groups_in_order
from fusion_core.metrics.model_eval import evaluate_model
from fusion_core.training.checkpoint import load_detector


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--with-distill", type=Path, default=ROOT / "models/default.pt")
    ap.add_argument("--without-distill", type=Path, default=ROOT / "runs/train_no_distill/model.pt")
    ap.add_argument("--data", type=Path, default=ROOT / "data/test")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/distillation_ablation.json")
    args = ap.parse_args()
    data = open_source(args.data)
    runs = {name: evaluate_model(load_detector(path), data)
            for name, path in (("with_distillation", args.with_distill), ("without_distillation", args.without_distill))}
    groups = groups_in_order(runs["with_distillation"].per_exit[-1])
    result = {"data": str(args.data), "frames": len(data),
              "checkpoints": {"with_distillation": str(args.with_distill), "without_distillation": str(args.without_distill)},
              "map": {name: {g: [per[g].mean_ap for per in r.per_exit] for g in groups} for name, r in runs.items()}}
    last_with = result["map"]["with_distillation"]["all"][-1]
    last_without = result["map"]["without_distillation"]["all"][-1]
    result["last_exit_change_from_distillation"] = round(last_with - last_without, 4)
    write_result(args.out, result, echo=False)
    n_exits = len(runs["with_distillation"].per_exit)
    print("| group | " + " | ".join(f"exit {k} with / without" for k in range(n_exits)) + " |")
    print("|---|" + "---:|" * n_exits)
    for g in groups:
        cells = [f"{result['map']['with_distillation'][g][k]:.3f} / {result['map']['without_distillation'][g][k]:.3f}"
                 for k in range(n_exits)]
        print(f"| {g} | " + " | ".join(cells) + " |")
    print(f"\nlast exit, all frames: distillation changes mAP by {result['last_exit_change_from_distillation']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
