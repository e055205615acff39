"""Static all-expert inference latency of the fusion detector: batch 1, 2 threads, median per
frame over many different frames after warm-up; per exit, with and without input preparation
(``collate``: depth back-projection, point filtering, image normalisation); the trained form
against the inference form DynamicFusion runs (``fusion_core.model.inference_form``). Also FLOPs.

    .venv/bin/python benchmarks/inference_latency.py [--checkpoint models/default.pt] [--frames 60]

Frames come from the default scenario (every sensor present), simulated in a subprocess: an
Open3D thread pool alive in this process would compete with torch's threads and distort the
timings. Run it on a quiet machine (anything else busy on the 2 cores inflates the numbers
several-fold). Writes benchmarks/results/inference_latency.json.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_result
from fusion_core.evaluation.cost import measure_cost
from fusion_core.model.config import load_model_config
from fusion_core.model.detector import FusionDetector
from fusion_core.model.inference_form import inference_form
from fusion_core.model.inputs import collate
from fusion_core.training.checkpoint import load_detector
from fusion_core.vocabulary import SENSORS

TARGET_MS = 80.0


def simulated_samples(n_frames: int, tmp: Path):
    from fusion_core.data.shard_source import ShardSource

    subprocess.run([sys.executable, "-m", "dyn_fusion.cli", "simulate", "--scenario", "default", "--frames",
                    str(n_frames), "--format", "shards", "--out", str(tmp), "--overwrite", "--no-progress"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    source = ShardSource(tmp)
    return [s for s in (source[i] for i in range(len(source))) if all(s.present(x) for x in SENSORS)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=ROOT / "models/default.pt")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/inference_latency.json")
    args = ap.parse_args()

    if args.checkpoint.is_file():
        model, source = load_detector(args.checkpoint), str(args.checkpoint)
    else:  # same architecture and cost, untrained
        model, source = FusionDetector(load_model_config(ROOT / "configs/model/default.yaml")), "untrained default config"
    model.eval()
    samples = simulated_samples(args.frames, ROOT / "runs/bench_inference_shards")
    torch.set_num_threads(args.threads)
    grid = model.config.grid
    warmup = 5
    per_exit_forward = [[] for _ in range(model.config.n_exits)]
    end_to_end = []
    with torch.no_grad():
        for _ in range(warmup):
            model(collate(samples[:1], grid))
        for sample in samples:
            start = time.perf_counter()
            inputs = collate([sample], grid)
            prepared = time.perf_counter()
            model(inputs)
            end_to_end.append(1e3 * (time.perf_counter() - start))
            per_exit_forward[-1].append(1e3 * (time.perf_counter() - prepared))
            for k in range(model.config.n_exits - 1):
                t0 = time.perf_counter()
                model(inputs, last_exit=k)
                per_exit_forward[k].append(1e3 * (time.perf_counter() - t0))
    # the form DynamicFusion (fusion_node, evaluate, compare) runs: BatchNorm folded, channels-last;
    # interleaved with the trained form frame by frame, so both see the same machine state
    fast = inference_form(model)
    trained_ms, folded_ms = [], []
    with torch.no_grad():
        for _ in range(warmup):
            fast(collate(samples[:1], grid))
        for sample in samples:
            inputs = collate([sample], grid)
            for net, times in ((model, trained_ms), (fast, folded_ms)):
                t0 = time.perf_counter()
                net(inputs)
                times.append(1e3 * (time.perf_counter() - t0))
    cost = measure_cost(model, collate(samples[:1], grid), threads=args.threads)
    result = {
        "model": source,
        "frames": len(samples),
        "threads": args.threads,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "forward_ms_median_per_exit": [round(statistics.median(v), 2) for v in per_exit_forward],
        "forward_ms_p90_last_exit": round(sorted(per_exit_forward[-1])[int(0.9 * len(samples))], 2),
        "collate_plus_forward_ms_median": round(statistics.median(end_to_end), 2),
        "inference_form_last_exit_ms_median": {"trained": round(statistics.median(trained_ms), 2),
                                               "inference_form": round(statistics.median(folded_ms), 2)},
        "gflops_per_frame": round(cost.flops_total / 1e9, 3),
        "gflops_per_expert": {k: round(v / 1e9, 3) for k, v in cost.flops_per_expert.items()},
        "gflops_per_stem": {k: round(v / 1e9, 3) for k, v in cost.flops_per_stem.items()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "target_ms": TARGET_MS,
    }
    result["meets_target"] = result["collate_plus_forward_ms_median"] <= TARGET_MS
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
