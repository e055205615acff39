"""Real training on a tiny config: the loss falls, mAP becomes non-trivial, checkpoints resume
exactly, and a two-process torchrun (DDP over gloo) run trains the same model shape."""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dyn_fusion.cli import main as cli_main
from fusion_core.data.open_source import split_tail
from fusion_core.data.shard_source import ShardSource
from fusion_core.metrics.model_eval import evaluate_model
from fusion_core.model.config import load_model_config
from fusion_core.model.inputs import collate
from fusion_core.training.checkpoint import load_detector, save_checkpoint
from fusion_core.training.config import load_train_config
from fusion_core.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[3]
TINY_MODEL = REPO / "configs/model/tiny.yaml"
TINY_TRAIN = REPO / "configs/train/tiny.yaml"


def test_cli_training_lowers_loss_and_reaches_nontrivial_map(tiny_shards, tmp_path):
    out = tmp_path / "run"
    rc = cli_main(["train", "--config", str(TINY_TRAIN), "--model", str(TINY_MODEL), "--data", str(tiny_shards),
                   "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader((out / "train_log.csv").read_text().splitlines()))
    losses = [float(r["loss"]) for r in rows if r["kind"] == "train"]
    assert sum(losses[-3:]) < 0.8 * sum(losses[:3]), losses
    val = [r for r in rows if r["kind"] == "val"]
    assert float(val[-1]["val_map_exit2"]) > 0.1  # held-out tail of the run, never trained on
    assert (out / "model.pt").is_file() and len(list((out / "checkpoints").glob("step_*.pt"))) == 2

    report = tmp_path / "eval" / "eval.json"
    markdown = tmp_path / "eval" / "results.md"
    rc = cli_main(["evaluate", "--checkpoint", str(out / "model.pt"), "--data", str(tiny_shards), "--json", str(report),
                   "--plots", str(tmp_path / "plots"), "--single-sensors", "--markdown", str(markdown)])
    assert rc == 0
    data = json.loads(report.read_text())
    # Single-sensor runs: the same frames, each detection sensor alone; they differ from each other.
    single = data["single_sensor"]
    assert set(single) == {"rgb", "depth", "lidar", "radar"}
    single_maps = {s: r["exits"][2]["all"]["mean_ap"] for s, r in single.items()}
    assert len(set(single_maps.values())) == 4, single_maps
    table = markdown.read_text()
    assert "| group | frames | exit 0 | exit 1 | exit 2 |" in table and "| condition:clear | 100 |" in table
    assert "lidar only" in table and (tmp_path / "plots" / "map_per_group_single_sensor.png").is_file()
    # --sensors restricts the main run the same way.
    lidar_report = tmp_path / "eval" / "lidar.json"
    assert cli_main(["evaluate", "--checkpoint", str(out / "model.pt"), "--data", str(tiny_shards), "--json",
                     str(lidar_report), "--sensors", "lidar", "--no-cost"]) == 0
    lidar = json.loads(lidar_report.read_text())
    assert lidar["sensors"] == ["lidar"] and "cost" not in lidar
    assert lidar["exits"][2]["all"]["mean_ap"] == pytest.approx(single_maps["lidar"])
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses an unknown sensor
        cli_main(["evaluate", "--checkpoint", str(out / "model.pt"), "--data", str(tiny_shards), "--json",
                  str(lidar_report), "--sensors", "sonar"])
    assert exit_info.value.code == 2
    assert len(data["exits"]) == 3 and data["n_frames"] == 100
    cost = data["cost"]  # FLOPs from FlopCounterMode, latency measured
    assert set(cost["flops_per_stem"]) == {"rgb", "depth", "lidar", "radar", "imu"}
    assert all(v > 0 for v in cost["flops_per_expert"].values()) and len(cost["flops_per_exit"]) == 3
    assert cost["flops_total"] > sum(cost["flops_per_expert"].values())
    assert all(ms > 0 for ms in cost["latency_ms_per_exit"])
    assert set(data["exits"][2]) == {"all", "condition:clear"}
    assert data["exits"][2]["all"]["mean_ap"] > 0.1
    assert (tmp_path / "plots" / "pr_curves_last_exit.png").stat().st_size > 10_000
    # An existing run folder is refused without --overwrite or --resume.
    assert cli_main(["train", "--config", str(TINY_TRAIN), "--model", str(TINY_MODEL), "--data", str(tiny_shards),
                     "--out", str(out)]) == 2


def _short_config(steps: int):
    return dataclasses.replace(load_train_config(TINY_TRAIN), steps=steps, checkpoint_every_steps=2,
                               val_every_steps=1000)


def test_resume_continues_exactly(tiny_shards, tmp_path):
    source = split_tail(ShardSource(tiny_shards), 0.5)[0]
    model_config = load_model_config(TINY_MODEL)
    straight = Trainer(model_config, _short_config(4), tmp_path / "a", progress=False)
    straight.fit(source)
    first = Trainer(model_config, _short_config(2), tmp_path / "b", progress=False)
    first.fit(source)
    resumed = Trainer(model_config, _short_config(4), tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 2
    resumed.fit(source)
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_round_trip_gives_identical_outputs(tiny_shards, tmp_path):
    from fusion_core.model.detector import FusionDetector

    torch.manual_seed(3)
    model = FusionDetector(load_model_config(TINY_MODEL)).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, step=7)
    loaded = load_detector(path)  # torch.load(weights_only=True) inside
    inputs = collate([ShardSource(tiny_shards)[5]], model.config.grid)
    with torch.no_grad():
        a, b = model(inputs), loaded(inputs)
    for ea, eb in zip(a.exits, b.exits):
        assert torch.equal(ea.heatmap_logits, eb.heatmap_logits) and torch.equal(ea.regression, eb.regression)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable dyn_fusion checkpoint"):
        load_detector(tmp_path / "bad.pt")


def test_torchrun_two_processes_train_the_same_model(tiny_shards, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text("steps: 4\nbatch_size: 2\nval_every_steps: 1000\ncheckpoint_every_steps: 2\nloader_workers: 0\n"
                      "threads: 1\n")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "dyn_fusion.cli", "train", "--config", str(config), "--model", str(TINY_MODEL),
           "--data", str(tiny_shards), "--out", str(out)]
    proc = subprocess.run(cmd, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    ddp_model = load_detector(out / "model.pt")
    single = Trainer(load_model_config(TINY_MODEL), load_train_config(config), tmp_path / "single", progress=False)
    single.fit(split_tail(ShardSource(tiny_shards), 0.1)[0])
    assert ddp_model.state_dict().keys() == single.model.state_dict().keys()
    for k, v in ddp_model.state_dict().items():
        assert v.shape == single.model.state_dict()[k].shape
    src = ShardSource(tiny_shards)
    ev_ddp = evaluate_model(ddp_model, src, max_frames=8, progress=False)
    ev_one = evaluate_model(single.model, src, max_frames=8, progress=False)
    assert len(ev_ddp.per_exit) == len(ev_one.per_exit) and ev_ddp.per_exit[0].keys() == ev_one.per_exit[0].keys()
    # Only rank 0 logs: one row per logged step, not two.
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert len(steps) == len(set(steps)) >= 1


def test_training_reads_whole_shards_together(tmp_path):
    from fusion_core.data.open_source import source_blocks
    from fusion_core.training.data import EpochSampler
    from sim.config import load_scenario, resolve_scenario
    from sim.simulator import Simulator
    from sim.writers.shards import ShardWriter

    sim = Simulator(load_scenario(resolve_scenario("default")))
    with ShardWriter(tmp_path / "ds", sim, frames_per_shard=7) as writer:
        for frame in sim.run(20):
            writer.write_frame(frame)
    source = ShardSource(tmp_path / "ds")
    assert source_blocks(source) == [range(7), range(7, 14), range(14, 20)]
    train, val = split_tail(source, 0.25)  # frames 0..14 and 15..19
    assert source_blocks(train) == [range(7), range(7, 14), range(14, 15)]
    assert source_blocks(val) == [range(5)]
    # One epoch visits each shard's frames consecutively.
    order = EpochSampler(source_blocks(source), seed=1).epoch_order(0)
    shard_of = [i // 7 for i in order]
    assert sorted(order) == list(range(20))
    assert sum(a != b for a, b in itertools.pairwise(shard_of)) == 2
