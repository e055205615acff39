#!/usr/bin/env python3
"""Robustness of every mode of one or more ``dyn-fusion compare`` runs against static fusion:
overall mAP, compute energy as a share of static's, the worst row (condition, dropout, fault or
fault-mix row with at least ``--min-frames`` frames) against static, how many rows fall below
static - ``--floor``, and the mean mAP over the adverse rows (fog, night, dropout, fault, mix).

    .venv/bin/python scripts/robustness_summary.py runs/compare/compare.json [--markdown out.md]

Works from any directory.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _adverse(group: str) -> bool:
    return group in ("condition:fog", "condition:night") or group.startswith(("dropout:", "fault:", "mix:"))


def summary_rows(compare: dict, min_frames: int, floor: float) -> list[dict]:
    """One dict per mode; raises ValueError when the run has no static column to measure against."""
    modes = {m["label"]: m for m in compare["modes"]}
    if "static" not in modes:
        raise ValueError("the comparison has no static column (run compare with static among --modes)")
    static = modes["static"]
    rows = [g for g, v in static["metrics"].items() if g != "all" and v["n_frames"] >= min_frames]
    adverse = [g for g in rows if _adverse(g)]
    out = []
    for label, mode in modes.items():
        ap = {g: v["mean_ap"] for g, v in mode["metrics"].items()}
        diffs = {g: ap[g] - static["metrics"][g]["mean_ap"] for g in rows if g in ap}
        worst = min(diffs, key=diffs.get) if diffs else None
        out.append({
            "mode": label, "map_all": ap["all"],
            "energy_vs_static": mode["cost"]["all"]["compute_j_per_frame"] / static["cost"]["all"]["compute_j_per_frame"],
            "worst_row": worst, "worst_vs_static": diffs[worst] if worst else 0.0,
            "rows_below_floor": sum(d < -floor for d in diffs.values()), "rows": len(diffs),
            "adverse_mean_map": sum(ap[g] for g in adverse if g in ap) / max(1, sum(g in ap for g in adverse)),
        })
    return out


def markdown(rows: list[dict], floor: float) -> str:
    lines = [f"| mode | mAP all | compute vs static | worst row vs static | rows below static − {floor:g} | adverse mean mAP |",
             "|---|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['map_all']:.3f} | {r['energy_vs_static']:.0%} | {r['worst_vs_static']:+.3f} "
                     f"({r['worst_row']}) | {r['rows_below_floor']} of {r['rows']} | {r['adverse_mean_map']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("compare_json", type=Path, nargs="+", help="compare.json files written by dyn-fusion compare")
    p.add_argument("--min-frames", type=int, default=20, help="rows with fewer frames are left out (default 20)")
    p.add_argument("--floor", type=float, default=0.02, help="count rows below static minus this (default 0.02)")
    p.add_argument("--markdown", type=Path, help="also write the tables here")
    args = p.parse_args()
    parts = []
    for path in args.compare_json:
        try:
            rows = summary_rows(json.loads(path.read_text()), args.min_frames, args.floor)
        except (OSError, ValueError, KeyError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 2
        parts.append(f"**{path}**\n\n{markdown(rows, args.floor)}")
    text = "\n".join(parts)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
