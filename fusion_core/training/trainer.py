"""``Trainer.fit``: the offline training loop.

One process, or several under ``torchrun`` (DDP over gloo on CPU): each process takes every
world-th frame, gradients are averaged, and only rank 0 validates, logs and writes checkpoints.
Logs go to ``<out>/train_log.csv`` and ``<out>/train_log.jsonl`` (one row per logged step and per
validation); checkpoints to ``<out>/checkpoints/step_XXXXXXX.pt`` and ``<out>/model.pt`` (final).
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from fusion_core.data.open_source import source_blocks
from fusion_core.data.sample import FusionSample
from fusion_core.metrics.model_eval import evaluate_model
from fusion_core.model.batch import BatchCollator
from fusion_core.model.camera_lift import camera_depth_loss
from fusion_core.model.config import ModelConfig
from fusion_core.model.detector import FusionDetector
from fusion_core.model.loss import detection_loss
from fusion_core.training.checkpoint import load_checkpoint, save_checkpoint
from fusion_core.training.config import TrainConfig
from fusion_core.training.data import (
    EpochSampler,
    TrainingFrames,
    expert_logit_noise_for_step,
    expert_mask_for_step,
)

CHECKPOINT_DIR = "checkpoints"
FINAL_MODEL = "model.pt"


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    val_map_per_exit: list[float | None]   # last validation, exit 0..n-1
    model_path: Path


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the torchrun group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def latest_checkpoint(out_dir: Path) -> Path | None:
    files = sorted((out_dir / CHECKPOINT_DIR).glob("step_*.pt"))
    return files[-1] if files else None


class Trainer:
    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, out_dir: Path | str,
                 resume: bool = False, progress: bool = True):
        self.model_config, self.config = model_config, train_config
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.rank, self.world = _distributed()
        self.progress = progress and self.rank == 0
        torch.manual_seed(train_config.seed)
        torch.set_num_threads(train_config.threads)
        self.model = FusionDetector(model_config)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train_config.learning_rate,
                                           weight_decay=train_config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        if resume:
            self._resume()

    def _lr_factor(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        progress = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _resume(self) -> None:
        path = latest_checkpoint(self.out_dir)
        if path is None:
            raise FileNotFoundError(f"--resume: no checkpoint in {self.out_dir / CHECKPOINT_DIR}")
        ckpt = load_checkpoint(path)
        if ckpt.model_config != self.model_config:
            raise ValueError(f"--resume: {path} was trained with a different model config")
        self.model.load_state_dict(ckpt.model_state)
        self.optimizer.load_state_dict(ckpt.optimizer_state)
        self.scheduler.load_state_dict(ckpt.scheduler_state)
        self.step = ckpt.step

    # ------------------------------------------------------------------ loop
    def fit(self, train: Sequence[FusionSample], val: Sequence[FusionSample] | None = None) -> TrainResult:
        c = self.config
        self.out_dir.mkdir(parents=True, exist_ok=True)
        sampler = EpochSampler(source_blocks(train), c.seed, start=self.step * c.batch_size, rank=self.rank,
                               world=self.world)
        loader = DataLoader(TrainingFrames(train, c.seed, c.sensor_dropout_prob, c.single_sensor_prob), batch_size=c.batch_size,
                            sampler=sampler, collate_fn=BatchCollator(self.model_config),
                            num_workers=c.loader_workers, persistent_workers=False,
                            worker_init_fn=_worker_init if c.loader_workers else None)
        model = self.model
        if self.world > 1:
            # Random expert masks leave different parameters unused from step to step.
            model = torch.nn.parallel.DistributedDataParallel(self.model, find_unused_parameters=True)
        self.model.train()
        val_maps: list[float | None] = [None] * self.model_config.n_exits
        loss_value = float("nan")
        bar = tqdm(total=c.steps, initial=self.step, desc="train", unit="step", disable=not self.progress)
        batches = iter(loader)
        while self.step < c.steps:
            batch = next(batches)
            mask = expert_mask_for_step(len(self.model.experts), c.seed, self.step, c.expert_keep_prob, c.full_model_prob)
            noise = expert_logit_noise_for_step(batch.inputs.batch_size, len(self.model.experts), c.seed, self.step,
                                                c.weight_jitter_prob, c.weight_jitter_std)
            out = model(batch.inputs, expert_mask=mask, distill_students=c.distill_weight > 0, expert_logit_noise=noise)
            loss = detection_loss(out.exits, batch.targets, c.distill_weight, students=out.distill_students)
            total = loss.total
            depth = None
            if out.camera_depth_logits is not None and c.camera_depth_weight > 0:
                depth = camera_depth_loss(self.model.stems["rgb"], out.camera_depth_logits, batch.inputs)
                total = total + c.camera_depth_weight * depth
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if c.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            loss_value = float(total.detach())
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.3f}")
            if self.rank == 0 and (self.step % c.log_every_steps == 0 or self.step == c.steps):
                self._log({"kind": "train", "step": self.step, "lr": self.scheduler.get_last_lr()[0],
                           **loss.as_floats(), "loss": loss_value,
                           **({} if depth is None else {"camera_depth": float(depth.detach())})})
            at_end = self.step == c.steps
            if val is not None and len(val) and (self.step % c.val_every_steps == 0 or at_end):
                val_maps = self._validate(val)
            if self.rank == 0 and (self.step % c.checkpoint_every_steps == 0 or at_end):
                self._checkpoint()
        bar.close()
        final = self.out_dir / FINAL_MODEL
        if self.rank == 0:
            save_checkpoint(final, self.model, self.step, c)
        if self.world > 1:
            dist.barrier()
        return TrainResult(self.step, loss_value, val_maps, final)

    def _validate(self, val: Sequence[FusionSample]) -> list[float | None]:
        maps: list[float | None] = [None] * self.model_config.n_exits
        if self.rank == 0:
            result = evaluate_model(self.model, val, max_frames=self.config.val_max_frames, progress=False)
            maps = [result.mean_ap(k) for k in range(self.model_config.n_exits)]
            self._log({"kind": "val", "step": self.step, "frames": result.n_frames,
                       **{f"val_map_exit{k}": m for k, m in enumerate(maps)}})
        if self.world > 1:
            dist.barrier()
        return maps

    def _checkpoint(self) -> None:
        path = self.out_dir / CHECKPOINT_DIR / f"step_{self.step:07d}.pt"
        save_checkpoint(path, self.model, self.step, self.config, self.optimizer, self.scheduler)
        for old in sorted((self.out_dir / CHECKPOINT_DIR).glob("step_*.pt"))[: -self.config.keep_checkpoints]:
            old.unlink()

    def _log(self, row: dict) -> None:
        with open(self.out_dir / "train_log.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        csv_path = self.out_dir / "train_log.csv"
        # One CSV with a fixed column set: train and validation rows share it, blanks elsewhere.
        columns = ["kind", "step", "lr", "loss", "camera_depth"] + [f"exit{k}_{p}" for k in range(self.model_config.n_exits)
                                                    for p in ("heatmap", "regression", "distill")] \
            + [f"val_map_exit{k}" for k in range(self.model_config.n_exits)] + ["frames"]
        new = not csv_path.exists()
        with open(csv_path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _worker_init(_worker_id: int) -> None:
    # Workers only decode and batch: one thread each leaves the cores to the training process.
    torch.set_num_threads(1)
