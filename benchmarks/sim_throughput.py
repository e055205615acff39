"""Simulator throughput: frames per second with all five sensors at the default resolution,
ray casting on one thread (the goal: >= 50 frames/s) and on all cores; and the throughput of
the rosbag2 (MCAP) and shard writers on pre-generated frames.

    .venv/bin/python benchmarks/sim_throughput.py [--frames 200] [--out benchmarks/results/sim_throughput.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_file import write_result
from sim.config import load_scenario, resolve_scenario
from sim.raycast import CastScene
from sim.simulator import Simulator

GOAL_FRAMES_PER_S = 50.0


def _time_simulation(config, frames: int, threads: int) -> dict:
    sim = Simulator(config, threads=threads)
    list(sim.run(3))  # warm-up: imports, first BVH builds, allocator
    cast_s = [0.0]
    original = CastScene.cast

    def timed_cast(self, origin, directions):
        t = time.perf_counter()
        out = original(self, origin, directions)
        cast_s[0] += time.perf_counter() - t
        return out

    CastScene.cast = timed_cast
    try:
        sim = Simulator(config, threads=threads)
        start = time.perf_counter()
        generated = list(sim.run(frames))
        wall = time.perf_counter() - start
    finally:
        CastScene.cast = original
    return {
        "threads": threads,
        "frames": frames,
        "wall_s": round(wall, 3),
        "frames_per_s": round(frames / wall, 2),
        "ms_per_frame": round(1e3 * wall / frames, 2),
        "ray_cast_ms_per_frame": round(1e3 * cast_s[0] / frames, 2),
    }, generated


def _time_lidar_scans(config, repeats: int = 30) -> dict:
    """Milliseconds for one LiDAR scan's ray cast: in the scenario's street scene at t = 1 s, and
    in a nearly empty scene (60 boxes in a row, most rays missing) for comparison."""
    from sim.world import SceneMesh, box_soup

    sim = Simulator(config)
    ego = sim.ego.state(1.0)
    pose = ego.world_from_base() @ sim.calibration["lidar"].base_from_sensor
    directions = (sim.lidar.directions @ pose[:3, :3].T).astype(np.float32)
    street = sim.world.scene_mesh(1.0, ego.s_m)
    boxes = np.concatenate([box_soup((pose[0, 3] + 3.0 * i, pose[1, 3] + 5.0, 0.75), (4.0, 2.0, 1.5)) for i in range(60)])
    empty = SceneMesh(boxes.astype(np.float32), np.zeros(len(boxes), np.int32), street.object_velocity_mps)
    out = {}
    for label, mesh in (("street_scene", street), ("near_empty_scene", empty)):
        for threads in (1, 0):
            scene = CastScene(mesh, threads)
            scene.cast(pose[:3, 3], directions)
            start = time.perf_counter()
            for _ in range(repeats):
                scene.cast(pose[:3, 3], directions)
            out[f"{label}_threads_{threads}_ms"] = round(1e3 * (time.perf_counter() - start) / repeats, 2)
    return out


def _with_lidar_steps(config, steps: int):
    sensors = dataclasses.replace(config.sensors, lidar=dataclasses.replace(config.sensors.lidar, azimuth_steps=steps))
    return dataclasses.replace(config, sensors=sensors)


def _time_writer(kind: str, config, generated) -> dict:
    from sim.writers.rosbag import RosbagWriter
    from sim.writers.shards import ShardWriter

    writer_cls = RosbagWriter if kind == "bag" else ShardWriter
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        start = time.perf_counter()
        with writer_cls(out, Simulator(config)) as writer:
            for frame in generated:
                writer.write_frame(frame)
        wall = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"frames_per_s": round(len(generated) / wall, 1), "mb_per_s": round(size / wall / 1e6, 1),
            "bytes_per_frame": int(size / len(generated))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "sim_throughput.json")
    args = parser.parse_args()

    config = load_scenario(resolve_scenario(args.scenario))
    one, generated = _time_simulation(config, args.frames, threads=1)
    all_cores, _ = _time_simulation(config, args.frames, threads=0)
    s = config.sensors
    rays = {
        "lidar": s.lidar.beams * s.lidar.azimuth_steps,
        "rgb": s.rgb.width_px * s.rgb.height_px,
        "depth": s.depth.width_px * s.depth.height_px,
        "radar": int(np.prod(s.radar.probe_rays)),
    }
    result = {
        "benchmark": "sim_throughput",
        "command": f"python benchmarks/sim_throughput.py --frames {args.frames} --scenario {args.scenario}",
        "scenario": config.name,
        "sensors": {
            "lidar": f"{s.lidar.beams}x{s.lidar.azimuth_steps} @ {s.lidar.rate_hz} Hz",
            "rgb": f"{s.rgb.width_px}x{s.rgb.height_px} @ {s.rgb.rate_hz} Hz",
            "depth": f"{s.depth.width_px}x{s.depth.height_px} @ {s.depth.rate_hz} Hz",
            "radar": f"{s.radar.probe_rays[0]}x{s.radar.probe_rays[1]} probe rays @ {s.radar.rate_hz} Hz",
            "imu": f"{s.imu.rate_hz} Hz",
        },
        "rays_per_capture": rays,
        "one_thread": one,
        "all_cores": all_cores,
        "goal_frames_per_s_one_thread": GOAL_FRAMES_PER_S,
        "goal_met": one["frames_per_s"] >= GOAL_FRAMES_PER_S,
        "lidar_scan_cast_32x1024": _time_lidar_scans(config),
        # The cheapest lever towards the goal, measured so its cost in fidelity can be weighed.
        "one_thread_lidar_32x512": _time_simulation(_with_lidar_steps(config, 512), args.frames, threads=1)[0],
        "bag_writer": _time_writer("bag", config, generated),
        "shard_writer": _time_writer("shards", config, generated),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "open3d": o3d.__version__,
                    "processor": platform.processor() or platform.machine()},
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
