"""The ROS 2 stack commands of ``dyn-fusion``: ``up`` (the vehicle stack: simulator -> fusion ->
energy monitor, then a report) and ``replay`` (a recorded bag through the same fusion node)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from fusion_core.config_io import ConfigError


def add_commands(sub) -> None:
    p = sub.add_parser("up", help="run the vehicle stack (sim_node, fusion_node, energy_monitor) and report")
    p.add_argument("stack", choices=("vehicle",), help="the node plan to run (ros_nodes/node_plan.py)")
    p.add_argument("--scenario", default="default", help="scenario name or YAML path (default: default)")
    p.add_argument("--duration-s", type=float, default=30.0, help="scenario seconds to run (default 30)")
    p.add_argument("--out", type=Path, default=Path("runs/latest"), help="run folder (default runs/latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--set", action="append", default=[], metavar="NODE:PARAM=VALUE",
                   help="override one node parameter, e.g. fusion_node:fusion.gate_mode=static (repeatable)")


def _overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        node, sep, rest = pair.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not node or not key:
            raise ConfigError(f"--set {pair!r}: expected NODE:PARAM=VALUE, e.g. fusion_node:fusion.lam_per_j=30")
        out.setdefault(node, {})[key] = value
    return out


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists():
        if not overwrite:
            raise ConfigError(f"{out}: exists; pass --overwrite to replace it")
        if out.is_dir() and not (out / "logs").is_dir() and any(out.iterdir()):
            raise ConfigError(f"{out}: exists and is not a run folder (no logs/); refusing to delete it")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.mkdir(parents=True)


def up_command(args: argparse.Namespace) -> int:
    from dyn_fusion.run_report import write_report
    from dyn_fusion.stack_runner import StackError, StackRun, run_stack
    from fusion_core.data.static_tf import save_static_tf
    from fusion_core.training.checkpoint import load_checkpoint
    from sim.calibration import rig_calibration, rig_static_tf
    from sim.config import load_scenario, resolve_scenario

    if not args.duration_s > 0:
        raise ConfigError(f"--duration-s: must be > 0, got {args.duration_s}")
    scenario_path = resolve_scenario(args.scenario)
    scenario = load_scenario(scenario_path)
    overrides = _overrides(args.set)
    checkpoint = overrides.get("fusion_node", {}).get("fusion.checkpoint", "models/default.pt")
    grid = load_checkpoint(checkpoint).model_config.grid
    _prepare_out(args.out, args.overwrite)
    # The rig's mounts, as /tf_static would carry them (tf2_msgs is not installable here).
    calibration = args.out / "calibration.yaml"
    save_static_tf(calibration, rig_static_tf(rig_calibration(scenario.sensors)))
    plan_overrides = {
        "sim_node": {"sim.scenario": str(scenario_path), "sim.duration_s": str(args.duration_s)},
        "fusion_node": {"fusion.calibration_file": str(calibration)},
        "energy_monitor": {"energy.run_dir": str(args.out)},
    }
    for node, values in overrides.items():
        plan_overrides.setdefault(node, {}).update(values)
    try:
        codes = run_stack(StackRun("vehicle", args.out, plan_overrides))
    except StackError as err:
        print(f"dyn-fusion up: {err}")
        return 1
    report = write_report(args.out, grid, f"dyn-fusion up vehicle: {scenario.name}, {args.duration_s:g} s")
    print("\n" + (args.out / "report.md").read_text())
    print(f"run folder: {args.out} (report.md, report.json, ledger.csv, frames.jsonl, logs/)")
    failed = {n: c for n, c in codes.items() if c != 0}
    if failed:
        print(f"dyn-fusion up: nodes exited with errors: {failed}")
        return 1
    return 0 if report.frames_fused else 1
