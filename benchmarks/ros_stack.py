"""The vehicle stack over real DDS (sim_node -> fusion_node -> energy_monitor, one process each):
end-to-end latency at 10 Hz, the highest sustained frame rate, CPU share per node, transport loss.

    .venv/bin/python benchmarks/ros_stack.py [--duration-s 30] [--repeats 2] [--rates 0.5,0.75,1,1.5,2]

Each measurement is a real ``dyn-fusion up vehicle`` run (default scenario, shipped model, loss
gate) read back from its run folder (report.json, drops.json, nodes.json):

- latency at 10 Hz: sensor header stamp -> detections published, p50/p95 over the fused frames,
  ``--repeats`` runs of ``--duration-s`` scenario seconds (run-to-run spread is large on 2 cores);
- rate sweep: the simulator at ``rate_factor`` r (frames at 10 r Hz, every sensor sped up alike),
  ``--sweep-duration-s`` scenario seconds each; a rate is sustained when fusion_node fused every
  frame (no ``overload`` drop) and nothing was lost in transport (header stamps are scenario time,
  so away from rate 1 only the receive -> publish latency means anything);
- CPU: each node's CPU time over the run phase / wall time (1.0 = one core).

Results: benchmarks/results/ros_stack.json. Run on a quiet machine: other jobs change every number.
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

FRAME_RATE_HZ = 10.0  # the default scenario's LiDAR (pivot) rate at rate_factor 1


def run_stack(out: Path, duration_s: float, rate_factor: float) -> dict:
    """One ``dyn-fusion up vehicle`` run; the numbers this benchmark reads from its folder."""
    cmd = [sys.executable, "-m", "dyn_fusion.cli", "up", "vehicle", "--duration-s", repr(duration_s),
           "--out", str(out), "--overwrite", "--set", f"sim_node:sim.rate_factor={rate_factor!r}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    report = json.loads((out / "report.json").read_text())
    drops = json.loads((out / "drops.json").read_text())
    nodes = json.loads((out / "nodes.json").read_text())
    published = drops["source_published"].get("/sensors/lidar/points", 0)  # frames the LiDAR pivot defined
    overload = sum(n for key, n in drops["fusion_node"].items() if key.startswith("lidar:overload"))
    return {
        "rate_factor": rate_factor, "frame_rate_hz": FRAME_RATE_HZ * rate_factor, "duration_s": duration_s,
        "frames_published_by_sim": published, "frames_fused": report["frames_fused"],
        "overload_frames": overload, "lost_in_transport": sum(drops["lost_in_transport"].values()),
        "stamp_to_publish_p50_ms": report["latency_ms"].get("stamp_to_publish_p50"),
        "stamp_to_publish_p95_ms": report["latency_ms"].get("stamp_to_publish_p95"),
        "receive_to_publish_p95_ms": report["latency_ms"].get("receive_to_publish_p95"),
        "map": report["map_all"], "cpu_share": {n: u["cpu_share"] for n, u in nodes.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration-s", type=float, default=30.0, help="scenario seconds of each 10 Hz run")
    ap.add_argument("--repeats", type=int, default=2, help="10 Hz runs")
    ap.add_argument("--rates", default="0.5,0.75,1.25,1.5", help="rate factors of the sweep (comma separated)")
    ap.add_argument("--sweep-duration-s", type=float, default=15.0, help="scenario seconds of each sweep run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ros_stack.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ros_stack_") as tmp:
        at_10hz = []
        for k in range(args.repeats):
            at_10hz.append(run_stack(Path(tmp) / f"run_{k}", args.duration_s, 1.0))
            print(f"10 Hz run {k + 1}/{args.repeats}: {json.dumps(at_10hz[-1])}", flush=True)
        sweep = []
        for rate in (float(r) for r in args.rates.split(",")):
            sweep.append(run_stack(Path(tmp) / f"rate_{rate:g}", args.sweep_duration_s, rate))
            print(f"rate {rate:g}: {json.dumps(sweep[-1])}", flush=True)
    sustained = [r["frame_rate_hz"] for r in sweep if r["overload_frames"] == 0 and r["lost_in_transport"] == 0]
    result = {
        "command": "benchmarks/ros_stack.py " + " ".join(sys.argv[1:]),
        "runs_at_10hz": at_10hz,
        "rate_sweep": sweep,
        "highest_sustained_rate_hz": max(sustained) if sustained else None,
        "targets": {"stamp_to_publish_p95_ms": 150.0, "lost_in_transport": 0},
    }
    write_result(args.out, result, echo=False)
    print("\n| run | frame rate | fused / sim frames | overload | lost | stamp->publish p50 / p95 ms | receive->publish "
          "p95 ms | CPU fusion / sim / monitor |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in [*((f"10 Hz #{k + 1}", r) for k, r in enumerate(at_10hz)), *((f"x{r['rate_factor']:g}", r) for r in sweep)]:
        cpu = r["cpu_share"]
        stamp = (f"{r['stamp_to_publish_p50_ms']:.0f} / {r['stamp_to_publish_p95_ms']:.0f}"
                 if r["rate_factor"] == 1.0 else "(stamps are scenario time)")
        print(f"| {name} | {r['frame_rate_hz']:g} Hz | {r['frames_fused']} / {r['frames_published_by_sim']} | "
              f"{r['overload_frames']} | {r['lost_in_transport']} | {stamp} | {r['receive_to_publish_p95_ms']:.0f} | "
              f"{cpu.get('fusion_node')} / {cpu.get('sim_node')} / {cpu.get('energy_monitor')} |")
    print(f"\nhighest sustained rate: {result['highest_sustained_rate_hz']} Hz; written {args.out}")


if __name__ == "__main__":
    main()
