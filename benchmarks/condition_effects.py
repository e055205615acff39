"""Measured effect of each condition on each sensor, same world and seed (the complementarity
table of DESIGN.md, in numbers). Writes JSON and prints a markdown table.

    .venv/bin/python benchmarks/condition_effects.py [--frames 20]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_file import write_result
from fusion_core.vocabulary import CONDITIONS
from sim.config import WeatherConfig, load_scenario, resolve_scenario
from sim.simulator import Simulator

SEVERITY = 0.75


def measure(condition: str, frames: int, scenario: str) -> dict:
    config = load_scenario(resolve_scenario(scenario))
    config = dataclasses.replace(config, weather=WeatherConfig(condition=condition, severity=SEVERITY))
    lidar_n, lidar_p99, depth_valid, rgb_mean, rgb_std, radar_n = [], [], [], [], [], []
    for frame in Simulator(config, threads=0).run(frames):
        for r in frame.readings:
            if r.sensor == "lidar":
                lidar_n.append(len(r.data))
                lidar_p99.append(np.percentile(np.linalg.norm(r.data[:, :3], axis=1), 99))
            elif r.sensor == "depth":
                depth_valid.append(np.isfinite(r.data).mean())
            elif r.sensor == "rgb":
                rgb_mean.append(r.data.mean())
                rgb_std.append(r.data.std())
            elif r.sensor == "radar":
                radar_n.append(len(r.data))
    return {
        "lidar_returns_per_scan": round(float(np.mean(lidar_n))),
        "lidar_range_p99_m": round(float(np.mean(lidar_p99)), 1),
        "depth_valid_fraction": round(float(np.mean(depth_valid)), 3),
        "rgb_mean_level": round(float(np.mean(rgb_mean)), 1),
        "rgb_contrast_std": round(float(np.mean(rgb_std)), 1),
        "radar_returns_per_scan": round(float(np.mean(radar_n)), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--scenario", default="clear")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "condition_effects.json")
    args = parser.parse_args()
    table = {c: measure(c, args.frames, args.scenario) for c in CONDITIONS}
    result = {"command": f"python benchmarks/condition_effects.py --frames {args.frames} --scenario {args.scenario}",
              "severity": SEVERITY, "conditions": table}
    write_result(args.out, result, echo=False)
    keys = list(next(iter(table.values())))
    print("| condition | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for c, row in table.items():
        print(f"| {c} | " + " | ".join(str(row[k]) for k in keys) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
