"""The ``dyn-fusion`` command.

    dyn-fusion simulate --scenario configs/scenarios/fog.yaml --frames 300 --out runs/fog.bag
    dyn-fusion preview  --scenario fog --out preview.png
    dyn-fusion demo     --out runs/latest          # what `make run` calls

Scenarios are given as a YAML path or as the name of a shipped scenario (``fog``).
Errors in input (bad scenario keys, existing outputs) exit with status 2 and one clear line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from fusion_core.config_io import ConfigError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _add_scenario_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", default="default",
                   help="scenario YAML path or shipped name (default: default)")
    p.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    p.add_argument("--threads", type=int, default=0,
                   help="ray-casting threads (0 = all cores; default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dyn-fusion", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulate a scenario into a rosbag2 (MCAP) or training shards")
    _add_scenario_args(p)
    p.add_argument("--frames", type=_positive_int, default=None, help="frames to simulate (default: the scenario's)")
    p.add_argument("--out", type=Path, required=True, help="output bag directory or shard directory")
    p.add_argument("--format", choices=("bag", "shards"), default="bag", help="output format (default bag)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("preview", help="render a contact sheet of all five sensors")
    _add_scenario_args(p)
    p.add_argument("--out", type=Path, default=Path("preview.png"), help="PNG to write (default preview.png)")
    p.add_argument("--frames", type=_positive_int, default=30,
                   help="frames to simulate; the last is shown, IMU traces cover all (default 30)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")

    p = sub.add_parser("demo", help="the main job: simulate the default scenario to a bag, summary and preview")
    _add_scenario_args(p)
    p.add_argument("--frames", type=_positive_int, default=None, help="frames (default: the scenario's)")
    p.add_argument("--out", type=Path, default=Path("runs/latest"), help="run folder (default runs/latest)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    return parser


def _simulate(args) -> int:
    from sim.session import load_with_seed, simulate_to_path

    config = load_with_seed(args.scenario, args.seed)
    summary, _ = simulate_to_path(config, args.frames or config.frames, args.out, args.format,
                                  overwrite=args.overwrite, threads=args.threads, progress=not args.no_progress)
    print(f"wrote {summary.output} ({summary.output_format}): {summary.frames} frames, "
          f"{summary.simulated_s:.1f} s simulated in {summary.wall_s:.1f} s ({summary.frames_per_s:.1f} frames/s)")
    for topic, count in sorted(summary.messages_per_topic.items()):
        print(f"  {topic:40s} {count:7d}")
    if summary.dropped_by_reason:
        print("  dropped: " + ", ".join(f"{k} x{v}" for k, v in sorted(summary.dropped_by_reason.items())))
    return 0


def _preview(args) -> int:
    from sim.preview import render_contact_sheet
    from sim.session import load_with_seed, prepare_output
    from sim.simulator import Simulator

    config = load_with_seed(args.scenario, args.seed)
    prepare_output(args.out, args.overwrite)
    simulator = Simulator(config, threads=args.threads)
    simulator.check_frames(args.frames)
    frames = list(simulator.run(args.frames))
    render_contact_sheet(frames, simulator, args.out)
    print(f"wrote {args.out}")
    return 0


def _demo(args) -> int:
    from sim.preview import render_contact_sheet
    from sim.session import load_with_seed, prepare_output, simulate_to_path
    from sim.simulator import Simulator

    config = load_with_seed(args.scenario, args.seed)
    frames = args.frames or config.frames
    prepare_output(args.out, args.overwrite)
    args.out.mkdir(parents=True)
    summary, last = simulate_to_path(config, frames, args.out / "bag", "bag", threads=args.threads, keep_last=30)
    (args.out / "summary.json").write_text(json.dumps(dataclasses.asdict(summary), indent=2) + "\n")
    render_contact_sheet(last, Simulator(config), args.out / "preview.png")
    print(f"\nscenario {summary.scenario} ({summary.condition}, seed {summary.seed}): {summary.frames} frames, "
          f"{summary.simulated_s:.1f} s simulated at {summary.frames_per_s:.1f} frames/s")
    print(f"{'sensor':8s} {'captures':>9s} {'rate Hz':>8s}")
    for sensor, n in summary.captures_per_sensor.items():
        print(f"{sensor:8s} {n:9d} {summary.rate_hz_per_sensor[sensor]:8.1f}")
    print("ground-truth boxes: " + ", ".join(f"{k} {v}" for k, v in sorted(summary.gt_boxes_per_class.items())))
    print(f"bag: {args.out / 'bag'}\nsummary: {args.out / 'summary.json'}\npreview: {args.out / 'preview.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"simulate": _simulate, "preview": _preview, "demo": _demo}[args.command]
    try:
        return handler(args)
    except (ConfigError, FileExistsError) as exc:
        print(f"dyn-fusion {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
