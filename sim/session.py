"""Running a scenario end to end: simulate N frames into a bag or shards, with progress and a
summary. The CLI and the demo both call :func:`simulate_to_path`."""
from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from fusion_core.config_io import ConfigError
from sim.config import ScenarioConfig, load_scenario, resolve_scenario
from sim.readings import SimFrame
from sim.simulator import Simulator

OUTPUT_FORMATS = ("bag", "shards")


@dataclass
class SimulationSummary:
    """What one run produced (written as summary.json by the demo)."""

    scenario: str
    condition: str
    seed: int
    frames: int
    simulated_s: float
    wall_s: float
    frames_per_s: float
    output: str
    output_format: str
    messages_per_topic: dict[str, int] = field(default_factory=dict)  # bags only
    shard_stats: dict = field(default_factory=dict)  # shards only: frames, shards, bytes
    captures_per_sensor: dict[str, int] = field(default_factory=dict)
    rate_hz_per_sensor: dict[str, float] = field(default_factory=dict)
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    fault_frames: dict[str, int] = field(default_factory=dict)
    gt_boxes_per_class: dict[str, int] = field(default_factory=dict)


def load_with_seed(scenario: str | Path, seed: int | None) -> ScenarioConfig:
    """Load a scenario by path or shipped name; ``seed`` (if given) overrides its seed."""
    config = load_scenario(resolve_scenario(scenario))
    return config if seed is None else dataclasses.replace(config, seed=seed)


def prepare_output(path: Path, overwrite: bool) -> None:
    """Refuse to clobber an existing output unless asked to."""
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)


def simulate_to_path(config: ScenarioConfig, frames: int, out: Path, output_format: str = "bag",
                     overwrite: bool = False, threads: int = 0, progress: bool = True,
                     keep_last: int = 0) -> tuple[SimulationSummary, list[SimFrame]]:
    """Simulate ``frames`` frames into ``out``; returns the summary and the last ``keep_last``
    frames (for previews)."""
    from fusion_core.boxes import CLASS_ID, CLASS_NAMES

    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    simulator = Simulator(config, threads=threads)
    simulator.check_frames(frames)
    prepare_output(out, overwrite)
    if output_format == "bag":
        from sim.writers.rosbag import RosbagWriter as Writer
    else:
        from sim.writers.shards import ShardWriter as Writer

    captures, dropped, faults, classes = Counter(), Counter(), Counter(), Counter()
    kept: list[SimFrame] = []
    start = time.perf_counter()
    with Writer(out, simulator) as writer:
        for frame in tqdm(simulator.run(frames), total=frames, desc=f"simulate {config.name}", unit="frame",
                          disable=not progress):
            writer.write_frame(frame)
            captures.update(r.sensor for r in frame.readings)
            dropped.update(f"{d.sensor}:{d.reason}" for d in frame.dropped)
            faults.update(f"{s}:{k}" for s, k in frame.active_faults.items())
            classes.update(CLASS_NAMES[int(c)] for c in frame.gt_boxes[:, CLASS_ID])
            if keep_last:
                kept = (kept + [frame])[-keep_last:]
        messages = writer.close()
    wall = time.perf_counter() - start
    simulated = frames / config.frame_rate_hz
    summary = SimulationSummary(
        scenario=config.name, condition=config.weather.condition, seed=config.seed, frames=frames,
        simulated_s=simulated, wall_s=round(wall, 3), frames_per_s=round(frames / wall, 2), output=str(out),
        output_format=output_format,
        messages_per_topic=dict(messages) if output_format == "bag" else {},
        shard_stats=dict(messages) if output_format == "shards" else {},
        captures_per_sensor=dict(captures),
        rate_hz_per_sensor={s: round(n / simulated, 2) for s, n in captures.items()},
        dropped_by_reason=dict(dropped), fault_frames=dict(faults), gt_boxes_per_class=dict(classes),
    )
    return summary, kept
