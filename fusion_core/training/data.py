"""The training data pipeline: deterministic shuffling and training-time sensor absence
(batching: fusion_core.model.batch).

Every random choice is a function of (seed, epoch, frame index) or (seed, step), never of a
generator's history, so a resumed run and a run split over torchrun processes see exactly the
frames and masks an uninterrupted single-process run would.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from fusion_core.data.sample import FusionSample
from fusion_core.vocabulary import DETECTION_SENSORS, TRAINING_DROPOUT


def drop_sensors(sample: FusionSample, prob: float, rng: np.random.Generator,
                 single_prob: float = 0.0) -> FusionSample:
    """With probability ``single_prob`` keep only one present detection sensor (chosen
    uniformly); otherwise make each absent with probability ``prob``, keeping at least one."""
    present = [s for s in DETECTION_SENSORS if sample.present(s)]
    if present and rng.random() < single_prob:
        keep = present[int(rng.integers(len(present)))]
        drop = [s for s in present if s != keep]
    else:
        drop = [s for s in present if rng.random() < prob]
    if len(drop) == len(present) and present:
        drop.pop(int(rng.integers(len(drop))))
    for s in drop:
        sample = sample.without(s, TRAINING_DROPOUT)
    return sample


def expert_mask_for_step(n_experts: int, seed: int, step: int, keep_prob: float, full_prob: float) -> torch.Tensor:
    """(E,) bool experts allowed in this step; all of them with probability ``full_prob``."""
    rng = np.random.default_rng([seed, 0xE4, step])
    if rng.random() < full_prob:
        return torch.ones(n_experts, dtype=torch.bool)
    keep = rng.random(n_experts) < keep_prob
    if not keep.any():
        keep[rng.integers(n_experts)] = True
    return torch.from_numpy(keep)


def expert_logit_noise_for_step(batch_size: int, n_experts: int, seed: int, step: int, prob: float,
                                std: float) -> torch.Tensor | None:
    """(B, E) Gaussian noise for the static fusion logits of this step (each frame its own), or
    None (no jitter this step) with probability 1 - ``prob``."""
    rng = np.random.default_rng([seed, 0x7177, step])
    if prob <= 0 or std <= 0 or rng.random() >= prob:
        return None
    return torch.from_numpy(rng.normal(0.0, std, (batch_size, n_experts)).astype(np.float32))


class EpochSampler(Sampler):
    """Endless (epoch, index) pairs from ``start`` on. Each epoch shuffles blocks (a source's
    shards, read whole) and the frames inside each block; process ``rank`` of ``world`` takes
    every world-th pair."""

    def __init__(self, blocks: Sequence[Sequence[int]], seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.blocks = [list(b) for b in blocks if len(b)]
        self.n = sum(len(b) for b in self.blocks)
        if self.n == 0:
            raise ValueError("no frames to train on")
        self.seed, self.start, self.rank, self.world = seed, start, rank, world

    def epoch_order(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.seed, 0x5A, epoch])
        order = []
        for b in rng.permutation(len(self.blocks)):
            order += [self.blocks[b][i] for i in rng.permutation(len(self.blocks[b]))]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        # Global position over the endless sequence of epochs; ``start`` counts pairs per process.
        position = self.start * self.world + self.rank
        epoch_cached, order = -1, []
        while True:
            epoch, offset = divmod(position, self.n)
            if epoch != epoch_cached:
                epoch_cached, order = epoch, self.epoch_order(epoch)
            yield epoch, order[offset]
            position += self.world


class TrainingFrames(Dataset):
    """Frames of a source with training-time sensor absence; indexed by (epoch, index) pairs."""

    def __init__(self, source: Sequence[FusionSample], seed: int, sensor_dropout_prob: float,
                 single_sensor_prob: float = 0.0):
        self.source, self.seed, self.prob, self.single_prob = source, seed, sensor_dropout_prob, single_sensor_prob

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> FusionSample:
        epoch, index = key
        sample = self.source[index]
        if self.prob > 0 or self.single_prob > 0:
            sample = drop_sensors(sample, self.prob, np.random.default_rng([self.seed, 0xD0, epoch, index]),
                                  self.single_prob)
        return sample
