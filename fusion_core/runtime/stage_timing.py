"""Measured time of each head stage, the anytime (deadline) exit policy's prediction of whether
the next exit can still finish in time. Timed on this machine at batch 1, like the runner."""
from __future__ import annotations

import time

import torch

from fusion_core.model.detector import FusionDetector
from fusion_core.model.inputs import ModelInputs


def measure_stage_ms(detector: FusionDetector, frame: ModelInputs, repeats: int = 7) -> tuple[float, ...]:
    """(K,) median wall time in ms of trunk stage k plus exit head k on ``frame`` (batch 1), the
    head's entry convolution counted in stage 0. The first run is a warm-up and not counted."""
    if frame.batch_size != 1:
        raise ValueError(f"stage timing runs one frame, got a batch of {frame.batch_size}")
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    detector.eval()
    head = detector.head
    with torch.no_grad():
        encoded = detector.encode(frame)
        active = detector.available_experts(encoded.present)
        fused = detector.fuse(encoded, active, detector.static_weights(active))
        samples = [[] for _ in range(head.n_exits)]
        for r in range(repeats + 1):
            start = time.perf_counter()
            x = head.entry(fused)
            for k in range(head.n_exits):
                x, _ = head.stage(k, x)
                now = time.perf_counter()
                if r > 0:
                    samples[k].append(1e3 * (now - start))
                start = now
    return tuple(float(torch.tensor(s).median()) for s in samples)
