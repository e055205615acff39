"""Does a replay over DDS reproduce the offline evaluation? One simulated bag, scored twice:

    .venv/bin/python benchmarks/replay_vs_offline.py [--frames 300] [--scenario default]

1. ``dyn-fusion simulate`` writes the bag (10 Hz, ``--frames`` frames);
2. ``dyn-fusion evaluate --gate loss --lam 5 --exit-policy last`` scores it offline (the
   settings ``configs/vehicle.yaml`` gives fusion_node);
3. ``dyn-fusion replay`` plays it through bag_player -> fusion_node -> energy_monitor over real
   DDS at rate 1, and scores the detections the monitor recorded against the bag's ground truth.

The issue's target: the two mAPs within 0.01. Results: benchmarks/results/replay_vs_offline.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_result

CLI = [sys.executable, "-m", "dyn_fusion.cli"]


def _run(args: list[str]) -> None:
    proc = subprocess.run(CLI + args, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"dyn-fusion {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                           f"{proc.stderr[-3000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="frames of the bag (10 Hz)")
    ap.add_argument("--scenario", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "replay_vs_offline.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay_vs_offline_") as tmp:
        bag, offline_json, replay_dir = Path(tmp) / "bag", Path(tmp) / "offline.json", Path(tmp) / "replay"
        _run(["simulate", "--scenario", args.scenario, "--frames", str(args.frames), "--out", str(bag),
              "--no-progress"])
        _run(["evaluate", "--checkpoint", "models/default.pt", "--gates", "models/default_gates.pt",
              "--data", str(bag), "--gate", "loss", "--lam", "5", "--exit-policy", "last",
              "--json", str(offline_json), "--no-cost"])
        _run(["replay", str(bag), "--out", str(replay_dir)])
        offline = json.loads(offline_json.read_text())["metrics"]["all"]
        replay = json.loads((replay_dir / "report.json").read_text())
        drops = json.loads((replay_dir / "drops.json").read_text())
    result = {
        "command": "benchmarks/replay_vs_offline.py " + " ".join(sys.argv[1:]),
        "frames_in_bag": args.frames, "scenario": args.scenario,
        "offline_map": offline["mean_ap"], "offline_frames": offline["n_frames"],
        "replay_map": replay["map_all"], "replay_frames_fused": replay["frames_fused"],
        "replay_frames_evaluated": replay["frames_evaluated"],
        "abs_difference": abs(offline["mean_ap"] - replay["map_all"]),
        "lost_in_transport": sum(drops["lost_in_transport"].values()),
        "replay_receive_to_publish_ms": replay["latency_ms"],
        "target_abs_difference": 0.01,
    }
    write_result(args.out, result)


if __name__ == "__main__":
    main()
