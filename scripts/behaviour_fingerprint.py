#!/usr/bin/env python3
"""Fingerprint of what the shipped model and gates compute, for refactorings that must not change
behaviour: ``evaluate`` (batched static, every exit, each sensor alone) and ``compare`` (every gate
mode, dropout rows) on a fixed 60-frame set, plus one ``evaluate --gate`` run with an exit policy.
Wall-clock fields (latency, ms) are removed; everything else must be byte-identical.

    .venv/bin/python scripts/behaviour_fingerprint.py --out runs/fingerprint/after.json
    cmp runs/fingerprint/before.json runs/fingerprint/after.json

Works from any directory (paths are taken relative to the repository).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMING_WORDS = ("latency", "_ms", "wall", "elapsed", "per_s")


def _strip_timing(value):
    if isinstance(value, dict):
        return {k: _strip_timing(v) for k, v in value.items() if not any(w in k for w in TIMING_WORDS)}
    if isinstance(value, list):
        return [_strip_timing(v) for v in value]
    return value


def _cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "dyn_fusion.cli", *args]
    print("+ dyn-fusion " + " ".join(args), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-4000:]}")


def _data_digest(folder: Path) -> str:
    """sha256 over the collection's files (names and bytes): the simulator and shard writer's part."""
    digest = hashlib.sha256()
    # collection.json carries the build's wall time (build_s); everything else is what was simulated
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "collection.json"):
        digest.update(f.relative_to(folder).as_posix().encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="fingerprint JSON to write")
    p.add_argument("--data", type=Path, default=ROOT / "data" / "behaviour_check",
                   help="the 60-frame collection (built from configs/datasets/behaviour_check.yaml if missing)")
    p.add_argument("--rebuild", action="store_true", help="simulate the collection again even if it exists")
    args = p.parse_args()
    data = args.data.resolve()
    if args.rebuild or not (data / "collection.json").is_file():
        _cli("make-dataset", "--recipe", "configs/datasets/behaviour_check.yaml", "--out", str(data),
             "--overwrite", "--no-progress")
    model, gates = "models/default.pt", "models/default_gates.pt"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _cli("evaluate", "--checkpoint", model, "--data", str(data), "--single-sensors", "--no-cost",
             "--json", str(tmp / "evaluate.json"))
        _cli("compare", "--checkpoint", model, "--gates", gates, "--data", str(data), "--max-frames", "60",
             "--dropout-every", "4", "--out", str(tmp / "compare"))
        _cli("evaluate", "--checkpoint", model, "--gates", gates, "--data", str(data), "--gate", "attention",
             "--k", "3", "--exit-policy", "budget", "--exit-budget", "0.6", "--dropout-every", "5",
             "--json", str(tmp / "attention_budget.json"))
        _cli("evaluate", "--checkpoint", model, "--gates", gates, "--data", str(data), "--gate", "loss",
             "--lam", "30", "--exit-policy", "error", "--json", str(tmp / "loss_error.json"))
        fingerprint = {name: _strip_timing(json.loads((tmp / f).read_text()))
                       for name, f in (("evaluate", "evaluate.json"), ("compare", "compare/compare.json"),
                                       ("attention_budget", "attention_budget.json"),
                                       ("loss_error", "loss_error.json"))}
    # paths differ between runs (temporary folders); what was computed must not
    for part in fingerprint.values():
        for key in ("data", "checkpoint", "gates"):
            part.pop(key, None)
    fingerprint["data_sha256"] = _data_digest(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n")
    print(f"fingerprint: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
