"""dyn-fusion: dynamic multi-modal sensor fusion: simulate, train, evaluate, and run the ROS 2 stack.

    dyn-fusion simulate --scenario configs/scenarios/fog.yaml --frames 300 --out runs/fog.bag
    dyn-fusion preview  --scenario fog --out preview.png
    dyn-fusion demo     --out runs/demo            # simulator only: bag, summary, preview
    dyn-fusion make-dataset --recipe configs/datasets/train.yaml --out data/train
    dyn-fusion train    --config configs/train/default.yaml --data DATA --out runs/train
    dyn-fusion evaluate --checkpoint models/default.pt --data DATA --json eval.json --plots plots/
    dyn-fusion evaluate ... --gate loss --lam 30 --gates models/default_gates.pt --exit-policy budget
    dyn-fusion train-gates --checkpoint models/default.pt --data DATA --out models/default_gates.pt
    dyn-fusion compare  --checkpoint models/default.pt --gates models/default_gates.pt --data DATA --out runs/compare
    dyn-fusion up vehicle --duration-s 30 --out runs/latest   # the ROS 2 stack: what `make run` calls
    dyn-fusion replay BAG [--rate R] [--topics MAPPING.yaml] --out runs/replay

DATA is a shard directory written by `simulate --format shards`, a collection written by
`make-dataset`, or a rosbag (see --topics).

Scenarios are given as a YAML path or as the name of a shipped scenario (``fog``).
Errors in input (bad scenario keys, existing outputs) exit with status 2 and one clear line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from dyn_fusion import cli_stack
from dyn_fusion.cli_dynamic import (
    add_commands,
    add_evaluate_gate_options,
    compare_command,
    evaluate_gate_command,
    train_gates_command,
    wants_dynamic_evaluation,
)
from dyn_fusion.output_paths import check_output
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
    parser = argparse.ArgumentParser(prog="dyn-fusion", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="simulate a scenario into a rosbag2 (MCAP) or training shards")
    _add_scenario_args(p)
    p.add_argument("--frames", type=_positive_int, default=None, help="frames to simulate (default: the scenario's)")
    p.add_argument("--out", type=Path, required=True, help="output bag directory or shard directory")
    p.add_argument("--format", choices=("bag", "shards"), default="bag", help="output format (default bag)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("make-dataset", help="simulate a recipe of seeded scenario runs into a shard collection")
    p.add_argument("--recipe", type=Path, required=True, help="collection recipe YAML (configs/datasets/*.yaml)")
    p.add_argument("--out", type=Path, required=True, help="collection directory to write")
    p.add_argument("--threads", type=int, default=0, help="ray-casting threads (0 = all cores; default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing collection")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")

    p = sub.add_parser("preview", help="render a contact sheet of all five sensors")
    _add_scenario_args(p)
    p.add_argument("--out", type=Path, default=Path("preview.png"), help="PNG to write (default preview.png)")
    p.add_argument("--frames", type=_positive_int, default=30,
                   help="frames to simulate; the last is shown, IMU traces cover all (default 30)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")

    p = sub.add_parser("demo", help="simulator only: the default scenario to a bag, a summary and a preview")
    _add_scenario_args(p)
    p.add_argument("--frames", type=_positive_int, default=None, help="frames (default: the scenario's)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo; runs/latest is make run's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")

    p = sub.add_parser("train", help="train the fusion detector on shards or bags")
    p.add_argument("--config", type=Path, default=Path("configs/train/default.yaml"), help="training config YAML")
    p.add_argument("--model", type=Path, default=Path("configs/model/default.yaml"), help="model config YAML")
    p.add_argument("--data", type=Path, required=True, help="training data (shard directory or rosbag)")
    p.add_argument("--val", type=Path, default=None, help="validation data (default: the tail of --data)")
    p.add_argument("--topics", type=Path, default=None, help="topic mapping YAML for rosbag data")
    p.add_argument("--out", type=Path, required=True, help="run folder: logs, checkpoints, model.pt")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument("--steps", type=_positive_int, default=None, help="override the config's step count")

    p = sub.add_parser("evaluate", help="mAP per exit, condition and fault; optional plots")
    p.add_argument("--checkpoint", type=Path, required=True, help="model checkpoint (.pt)")
    p.add_argument("--data", type=Path, required=True, help="evaluation data (shard directory or rosbag)")
    p.add_argument("--topics", type=Path, default=None, help="topic mapping YAML for rosbag data")
    p.add_argument("--json", type=Path, required=True, help="write the results here")
    p.add_argument("--plots", type=Path, default=None, help="write PR curves and per-condition bars into this folder")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="frames per forward pass (default 8)")
    p.add_argument("--max-frames", type=_positive_int, default=None, help="evaluate only the first N frames")
    p.add_argument("--sensors", type=_sensor_list, default=None,
                   help="comma-separated detection sensors to keep (others made absent; default: all)")
    p.add_argument("--single-sensors", action="store_true",
                   help="also evaluate with each detection sensor alone (the single-sensor table)")
    p.add_argument("--min-visibility", type=float, default=None,
                   help="ground truth below this geometric visibility is ignored (default 0.05)")
    p.add_argument("--markdown", type=Path, default=None, help="write the results tables as markdown here")
    p.add_argument("--no-cost", action="store_true", help="skip the FLOPs and latency measurement")
    add_evaluate_gate_options(p)
    add_commands(sub)
    cli_stack.add_commands(sub)
    return parser


def _sensor_list(text: str) -> tuple[str, ...]:
    from fusion_core.vocabulary import DETECTION_SENSORS

    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in names if s not in DETECTION_SENSORS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(DETECTION_SENSORS)}, got {text!r}")
    return names


def _train(args) -> int:
    import dataclasses as dc
    import shutil

    from fusion_core.data.open_source import open_source, split_tail
    from fusion_core.model.config import load_model_config
    from fusion_core.training.config import load_train_config
    from fusion_core.training.trainer import Trainer

    train_config = load_train_config(args.config)
    overrides = {k: v for k, v in (("seed", args.seed), ("steps", args.steps)) if v is not None}
    train_config = dc.replace(train_config, **overrides)
    model_config = load_model_config(args.model)
    if args.out.exists() and not args.resume:
        if not args.overwrite:
            raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it or --resume to continue")
        shutil.rmtree(args.out)
    data = open_source(args.data, args.topics)
    if args.val is not None:
        train, val = data, open_source(args.val, args.topics)
    else:
        train, val = split_tail(data, train_config.val_fraction)
    print(f"training {model_config.name} on {len(train)} frames, validating on {len(val)}; run folder {args.out}")
    result = Trainer(model_config, train_config, args.out, resume=args.resume).fit(train, val)
    maps = ", ".join(f"exit {k}: {m:.3f}" if m is not None else f"exit {k}: n/a" for k, m in enumerate(result.val_map_per_exit))
    print(f"done: {result.steps} steps, final loss {result.final_loss:.3f}; validation mAP {maps}")
    print(f"model: {result.model_path}\nlog: {args.out / 'train_log.csv'}")
    return 0


def _evaluate(args) -> int:
    from fusion_core.data.open_source import (
        open_source,
        source_drops,
        source_error,
        source_error_note,
        source_warnings,
    )
    from fusion_core.data.sample import DEFAULT_MIN_VISIBILITY
    from fusion_core.evaluation.report import exits_table, single_sensor_table
    from fusion_core.metrics.model_eval import SensorSubset, evaluate_model
    from fusion_core.training.checkpoint import load_detector
    from fusion_core.vocabulary import DETECTION_SENSORS

    check_output(args.json, "--json")
    check_output(args.markdown, "--markdown")
    check_output(args.plots, "--plots", folder=True)
    model = load_detector(args.checkpoint)
    data = open_source(args.data, args.topics)
    min_visibility = DEFAULT_MIN_VISIBILITY if args.min_visibility is None else args.min_visibility
    if not 0.0 <= min_visibility <= 1.0:
        raise ConfigError(f"--min-visibility: expected a value in [0, 1], got {min_visibility}")
    if wants_dynamic_evaluation(args):
        if args.sensors is not None or args.single_sensors:
            raise ConfigError("--sensors and --single-sensors are for the static batch evaluation; "
                              "with --gate use --dropout-every for sensor-dropout rows")
        return evaluate_gate_command(args, model, data, min_visibility)

    def run(source, label):
        print(f"evaluating {label} on {min(len(source), args.max_frames or len(source))} frames")
        return evaluate_model(model, source, batch_size=args.batch_size, max_frames=args.max_frames,
                              min_visibility=min_visibility)

    main_source = data if args.sensors is None else SensorSubset(data, args.sensors)
    result = run(main_source, "all sensors" if args.sensors is None else "+".join(args.sensors))
    report = {"checkpoint": str(args.checkpoint), "data": str(args.data),
              "sensors": list(args.sensors or DETECTION_SENSORS), "min_visibility": min_visibility,
              "source_drops": source_drops(data), "source_error": source_error(data),
              "source_warnings": source_warnings(data), **result.to_json(pr_curve_points=21)}
    single = {}
    if args.single_sensors:
        single = {s: run(SensorSubset(data, (s,)), f"{s} alone") for s in DETECTION_SENSORS}
        report["single_sensor"] = {s: r.to_json() for s, r in single.items()}
    cost = None if args.no_cost else _static_cost(model, data)
    if cost is not None:
        report["cost"] = cost.to_json()
        print("static all-expert latency per exit (ms, batch 1, 2 threads): "
              + ", ".join(f"{v:.1f}" for v in cost.latency_ms_per_exit)
              + f"; GFLOPs per frame {cost.flops_total / 1e9:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    tables = [f"mAP per exit ({'all sensors' if args.sensors is None else '+'.join(args.sensors)}):\n\n"
              + exits_table(result)]
    if single:
        tables.append("Last-exit mAP with one detection sensor alone (IMU kept; best per row in bold):\n\n"
                      + single_sensor_table(single))
    text = source_error_note(data) + "\n\n".join(tables) + "\n"
    print("\n" + text)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
        print(f"markdown: {args.markdown}")
    if args.plots is not None:
        from fusion_core.evaluation.plots import plot_group_bars, plot_pr_curves

        args.plots.mkdir(parents=True, exist_ok=True)
        plot_pr_curves(result.per_exit[-1]["all"], args.plots / "pr_curves_last_exit.png")
        plot_group_bars({f"exit {k}": groups_k for k, groups_k in enumerate(result.per_exit)},
                        args.plots / "map_per_group.png")
        if single:
            plot_group_bars({f"{s} alone": r.per_exit[-1] for s, r in single.items()},
                            args.plots / "map_per_group_single_sensor.png")
        print(f"plots: {args.plots}")
    print(f"results: {args.json}")
    return 0


def _static_cost(model, data):
    """Cost of static all-expert inference on the first frame that has every sensor (None if none does)."""
    from fusion_core.evaluation.cost import measure_cost
    from fusion_core.model.inputs import collate
    from fusion_core.vocabulary import SENSORS

    for i in range(min(len(data), 50)):
        sample = data[i]
        if all(sample.present(s) for s in SENSORS):
            return measure_cost(model, collate([sample], model.config.grid))
    return None


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


def _make_dataset(args) -> int:
    from sim.collection import build_collection, load_recipe

    recipe = load_recipe(args.recipe)
    print(f"collection {recipe.name}: {len(recipe.runs())} runs, {recipe.n_frames} frames -> {args.out}")
    names = build_collection(recipe, args.out, overwrite=args.overwrite, threads=args.threads,
                             progress=not args.no_progress)
    print(f"wrote {args.out}: {len(names)} shard datasets, {recipe.n_frames} frames")
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
    handler = {"simulate": _simulate, "make-dataset": _make_dataset, "preview": _preview, "demo": _demo, "train": _train,
               "evaluate": _evaluate, "train-gates": train_gates_command, "compare": compare_command,
               "up": cli_stack.up_command, "replay": cli_stack.replay_command}[args.command]
    try:
        return handler(args)
    except (ConfigError, FileExistsError, FileNotFoundError) as exc:
        print(f"dyn-fusion {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
