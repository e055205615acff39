"""Compute cost of the detector: FLOPs per stem, expert and exit head (``fusion_core.energy.flops``,
FlopCounterMode with the CPU attention formulas), and
measured per-frame latency (batch 1, median after warm-up)."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from fusion_core.energy.flops import count_flops
from fusion_core.model.detector import FusionDetector
from fusion_core.model.inputs import ModelInputs


@dataclass
class ModelCost:
    flops_per_stem: dict[str, int]     # sensor -> FLOPs for one frame (rgb, depth, lidar, radar, imu)
    flops_per_expert: dict[str, int]   # expert name -> FLOPs
    flops_per_exit: list[int]          # exit k -> FLOPs of its trunk stage and its exit head
    flops_head_entry: int              # the head's entry convolution (paid by every exit)
    flops_total: int                   # all experts, all exits
    latency_ms_per_exit: list[float]   # median ms per frame, all experts, stopping at exit k
    threads: int

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def measure_cost(model: FusionDetector, inputs: ModelInputs, threads: int = 2, warmup: int = 3,
                 repeats: int = 15) -> ModelCost:
    """``inputs``: one frame with every sensor present (the cost of static all-expert fusion)."""
    if inputs.batch_size != 1:
        raise ValueError("measure_cost expects a batch of one frame")
    model.eval()
    with torch.no_grad():
        counted = count_flops(model, inputs)
    root = type(model).__name__

    def module(path: str) -> int:
        return counted.by_module.get(f"{root}.{path}", 0)

    stems = {s: module(f"stems.{s}") for s in model.stems}
    stems["imu"] = module("imu")
    experts = {e.config.name: module(f"experts.{k}") for k, e in enumerate(model.experts)}
    exits = [module(f"head.stages.{k}") + module(f"head.exits.{k}") for k in range(model.config.n_exits)]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    latency = []
    try:
        with torch.no_grad():
            for k in range(model.config.n_exits):
                for _ in range(warmup):
                    model(inputs, last_exit=k)
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    model(inputs, last_exit=k)
                    times.append(1e3 * (time.perf_counter() - start))
                latency.append(round(statistics.median(times), 2))
    finally:
        torch.set_num_threads(previous)
    return ModelCost(stems, experts, exits, module("head.entry"), counted.total, latency, threads)
