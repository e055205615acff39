"""The long run of the fault-injection harness: every mutation of tests/fault_injection.py over
several seeds, each damaged bag through `dyn-fusion evaluate` and `dyn-fusion replay`.

    .venv/bin/python benchmarks/fault_injection.py [--seeds 2] [--frames 20] [--only NAME,...]

A case survives when neither command printed a traceback, each ended with rc 0 or a one-line
error, replay left a report, and where both read the bag they agree on frames and content drops
(where replay's transport lost messages, counted in its report, its frames may be fewer by at
most those; such cases are listed under ``with_transport_loss``).
Results (per case: rc, frames, drops, problems): benchmarks/results/fault_injection.json.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results_file import write_result
from tests.fault_injection import MUTATIONS, agreement, mutate, run_evaluate, run_replay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="seeds per mutation")
    ap.add_argument("--frames", type=int, default=20, help="frames of the good bag")
    ap.add_argument("--only", default=None, help="comma-separated mutation names (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fault_injection.json")
    args = ap.parse_args()
    names = list(MUTATIONS) if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in MUTATIONS]
    if unknown:
        ap.error(f"unknown mutations {unknown}; known: {', '.join(MUTATIONS)}")
    cases = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault_injection_") as tmp:
        good = Path(tmp) / "good"
        subprocess.run([sys.executable, "-m", "dyn_fusion.cli", "simulate", "--scenario", "default", "--frames",
                        str(args.frames), "--out", str(good), "--no-progress"], cwd=ROOT, check=True, capture_output=True)
        for name in tqdm(names, desc="mutations"):
            for seed in range(args.seeds):
                work = Path(tmp) / f"{name}_{seed}"
                work.mkdir()
                bag = mutate(good, work / "bag", name, seed)
                evaluate, replay = run_evaluate(bag, work), run_replay(bag, work)
                problems = evaluate.problems + replay.problems + agreement(evaluate, replay)
                cases.append({"mutation": name, "seed": seed, "survived": not problems, "problems": problems,
                              **{f"{o.command}_{k}": getattr(o, k) for o in (evaluate, replay)
                                 for k in ("rc", "frames", "drops")},
                              "replay_lost_in_transport": replay.lost_in_transport,
                              # what the commands printed, where something went wrong (to diagnose)
                              **({f"{o.command}_output_tail": o.output[-3000:] for o in (evaluate, replay)
                                  if o.problems} if problems else {})})
    survived = sum(c["survived"] for c in cases)
    write_result(args.out, {"command": "benchmarks/fault_injection.py " + " ".join(sys.argv[1:]),
                            "cases": len(cases), "survived": survived, "wall_s": round(time.monotonic() - start),
                            # survived, but the replay's transport lost messages (counted in its report),
                            # so its frames could only be checked against evaluate's loosely
                            "with_transport_loss": [f"{c['mutation']} seed {c['seed']}: {c['replay_lost_in_transport']}"
                                                    for c in cases if c["replay_lost_in_transport"]],
                            "failed": [f"{c['mutation']} seed {c['seed']}: {'; '.join(c['problems'])}"
                                       for c in cases if not c["survived"]],
                            "per_case": cases})


if __name__ == "__main__":
    main()
