"""The dynamic-fusion commands of ``dyn-fusion``: ``train-gates`` and ``compare``, and the gate
options ``evaluate`` shares with them (``evaluate --gate MODE``: one mode, same measurements)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from fusion_core.config_io import ConfigError
from fusion_core.runtime.exit_setup import EXIT_POLICIES


def add_gate_options(p: argparse.ArgumentParser, dropout_every: int = 4) -> None:
    """Options choosing the gates file, device profile and exit policy (shared by evaluate and compare)."""
    p.add_argument("--gates", type=Path, default=None,
                   help="trained gates (.pt) for the knowledge, attention, loss and oracle modes")
    p.add_argument("--profile", default="jetson_orin",
                   help="device energy profile: a name in configs/energy/ or a YAML path (default jetson_orin)")
    p.add_argument("--exit-policy", choices=EXIT_POLICIES, default="last", help="when a frame leaves the head")
    p.add_argument("--exit-threshold", type=float, default=0.8, help="confidence policy: stop at this frame confidence")
    p.add_argument("--exit-budget", type=float, default=0.7,
                   help="budget policy: mean head compute as a share of running every exit (thresholds from the gates' calibration)")
    p.add_argument("--exit-lam", type=float, default=0.05,
                   help="error policy (QuEE): error traded per GFLOP of head compute")
    p.add_argument("--deadline-ms", type=float, default=None,
                   help="deadline policy: per-frame time budget from the frame's start, ms (stage times measured here first)")
    p.add_argument("--dropout-every", type=int, default=dropout_every,
                   help="dropout rows re-run every Nth frame with one sensor removed (0 = no dropout rows)")


def add_commands(sub) -> None:
    p = sub.add_parser("train-gates", help="train the context head, attention gate and loss predictor on a frozen detector")
    p.add_argument("--checkpoint", type=Path, required=True, help="trained detector (.pt)")
    p.add_argument("--config", type=Path, default=Path("configs/gates/default.yaml"), help="gates config YAML")
    p.add_argument("--data", type=Path, required=True, help="training data (shard directory or collection)")
    p.add_argument("--out", type=Path, required=True, help="write the gates checkpoint here (.pt)")

    p = sub.add_parser("compare", help="every gate mode on one dataset: mAP, joules and ms per condition; plots")
    p.add_argument("--checkpoint", type=Path, required=True, help="trained detector (.pt)")
    p.add_argument("--data", type=Path, required=True, help="evaluation data (shard directory or collection)")
    p.add_argument("--out", type=Path, required=True, help="folder for compare.json, compare.md and plots")
    p.add_argument("--max-frames", type=int, default=None, help="use N frames spread over the data (default all)")
    p.add_argument("--modes", default=None,
                   help="comma-separated labels of the default mode list to run (default: all of them)")
    p.add_argument("--lams", type=_float_list, default=None,
                   help="comma-separated λ of the loss and oracle columns, in the gates' target unit per joule "
                        "(default 0,5,30,100 for detection_loss; detection_error lies in [0, 1]: try 0,0.5,2,5)")
    add_gate_options(p)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, got {text!r}")
    return values


def add_evaluate_gate_options(p: argparse.ArgumentParser) -> None:
    """``evaluate``'s options for one dynamic mode (without --gate or an exit policy, evaluate
    runs the batched static evaluation)."""
    from fusion_core.gates.settings import GATE_MODES

    p.add_argument("--gate", choices=GATE_MODES, default=None,
                   help="evaluate one gate mode frame by frame, with energy and usage (needs --gates except static and late)")
    p.add_argument("--k", type=int, default=2, help="attention gate: experts kept per frame")
    p.add_argument("--gamma", type=float, default=0.5, help="loss and oracle gates: loss margin of the kept configurations")
    p.add_argument("--lam", type=float, default=0.0, help="loss and oracle gates: units of the gates' loss target (loss or error) traded per joule of compute")
    add_gate_options(p, dropout_every=0)


def _exit_policy(args, gates, detector=None, frame=None):
    """The exit policy the flags ask for. ``detector`` and ``frame`` (one full frame, batch 1) are
    needed only by the deadline policy, whose stage times are measured on them."""
    from fusion_core.runtime.exit_setup import build_exit_policy

    if args.exit_policy == "deadline" and args.deadline_ms is None:
        raise ConfigError("--exit-policy deadline needs --deadline-ms")
    policy = build_exit_policy(args.exit_policy, gates=gates, detector=detector, frame=frame,
                               threshold=args.exit_threshold, budget=args.exit_budget, lam=args.exit_lam,
                               deadline_ms=args.deadline_ms)
    if args.exit_policy == "deadline":
        print("deadline policy: measured head stage times " + ", ".join(f"{t:.1f}" for t in policy.predicted_stage_ms)
              + " ms")
    return policy


def train_gates_command(args) -> int:
    from fusion_core.data.open_source import open_source, split_tail
    from fusion_core.gates.config import load_gates_config
    from fusion_core.gates.modules import GateModules, save_gates
    from fusion_core.gates.training import train_gates
    from fusion_core.model.batch import BatchCollator
    from fusion_core.runtime.cost_table import measure_cost_table
    from fusion_core.training.checkpoint import load_checkpoint, load_detector

    detector = load_detector(args.checkpoint)
    train_config = load_checkpoint(args.checkpoint).train_config
    gates = GateModules(load_gates_config(args.config), detector.config)
    data = open_source(args.data)
    # The exits are calibrated on the tail the detector's training held out (its validation frames).
    val_fraction = train_config.val_fraction if train_config is not None else 0.1
    _train_part, held_out = split_tail(data, val_fraction)
    full = next((held_out[i] for i in range(len(held_out))
                 if all(held_out[i].present(s) for s in ("rgb", "depth", "lidar", "radar"))), None)
    if full is None:
        raise ConfigError(f"{args.data}: no held-out frame has every detection sensor (needed for the head's cost)")
    table = measure_cost_table(detector, None, BatchCollator(detector.config)([full]).inputs)
    report = train_gates(detector, gates, data, calibration_frames=held_out,
                         head_flops=table.head_flops(detector.config.n_exits))
    save_gates(args.out, gates, {"checkpoint": str(args.checkpoint), "data": str(args.data), **report.to_json()})
    acc = report.context_train_accuracy["condition_accuracy"]
    print("context head, training accuracy per condition: " + ", ".join(f"{c} {a:.2f}" for c, a in acc.items()))
    print(f"mean last-exit {gates.config.training.loss_target.replace('_', ' ')} per configuration: "
          + ", ".join(f"{c} {v:.2f}" for c, v in report.configuration_mean_loss.items()))
    print(f"exit calibration: {report.exit_calibration_frames} held-out frames")
    print(f"gates: {args.out}")
    return 0


def compare_command(args) -> int:
    from fusion_core.data.open_source import open_source, spread_indices
    from fusion_core.energy.profile import load_device_profile
    from fusion_core.evaluation.compare import (
        compare_markdown,
        default_modes,
        energy_at_equal_map,
        plot_exit_histogram,
        plot_pareto,
        plot_usage_heatmap,
    )
    from fusion_core.evaluation.dynamic_eval import evaluate_dynamic
    from fusion_core.gates.modules import load_gates
    from fusion_core.runtime.cost_table import measure_cost_table
    from fusion_core.runtime.dynamic_fusion import DynamicFusion
    from fusion_core.training.checkpoint import load_detector

    detector = load_detector(args.checkpoint)
    gates = load_gates(args.gates, detector.config) if args.gates is not None else None
    profile = load_device_profile(args.profile)
    data = open_source(args.data)
    modes = default_modes() if args.lams is None else default_modes(lams_per_j=args.lams)
    if args.modes is not None:
        wanted = [m.strip() for m in args.modes.split(",") if m.strip()]
        unknown = [w for w in wanted if w not in {m.label for m in modes}]
        if unknown:
            raise ConfigError(f"--modes: unknown {unknown}; choose from {', '.join(m.label for m in modes)}")
        modes = [m for m in modes if m.label in wanted]
    if gates is None:
        modes = [m for m in modes if m.settings.mode in ("static", "late")]
        print("no --gates: comparing static and late only")
    frames = spread_indices(len(data), args.max_frames)
    dropout_frames = frames[:: args.dropout_every] if args.dropout_every > 0 else []
    full = _full_frame(detector, data, frames, args.data)
    table = measure_cost_table(detector, gates, full)
    policy = _exit_policy(args, gates, detector, full)
    evaluations = []
    for mode in modes:
        fusion = DynamicFusion(detector, gates, mode.settings, policy, table, profile)
        evaluations.append(evaluate_dynamic(fusion, data, mode.label, profile, frames=frames,
                                            dropout_frames=dropout_frames))
        e = evaluations[-1]
        print(f"{mode.label:18s} mAP {e.mean_ap() or 0:.3f}  compute {1e3 * e.cost['all'].compute_j_per_frame:7.2f} mJ/frame"
              f"  {e.cost['all'].latency_ms_median:6.1f} ms/frame")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(args.checkpoint), "gates": str(args.gates), "data": str(args.data),
              "profile": profile.name, "exit_policy": args.exit_policy, "n_frames": len(frames),
              "dropout_frames": len(dropout_frames), "cost_table_flops": table.to_json(),
              "modes": [{"settings": vars(m.settings), **e.to_json()} for m, e in zip(modes, evaluations)]}
    oracles = [e for e in evaluations if e.label.startswith("oracle")]
    if oracles:
        report["oracle_energy_at_equal_map_j"] = {e.label: energy_at_equal_map(e, oracles) for e in evaluations
                                                  if not e.label.startswith("oracle")}
    (args.out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = compare_markdown(evaluations, profile.name)
    (args.out / "compare.md").write_text(markdown)
    plot_pareto(evaluations, args.out / "pareto.png", profile.name)
    for e in evaluations:
        if e.label.startswith(("attention k=2", "loss", "knowledge")):
            safe = e.label.replace(" ", "_").replace("=", "").replace("λ", "lam")
            plot_usage_heatmap(e, detector.expert_names, args.out / f"usage_{safe}.png")
    plot_exit_histogram(evaluations, args.out / "exit_histogram.png")
    print("\n" + markdown)
    print(f"results: {args.out / 'compare.json'}, {args.out / 'compare.md'}, plots in {args.out}")
    return 0


def _full_frame(detector, data, frames, where):
    """ModelInputs of the first of ``frames`` with every detection sensor (the cost table and the
    stage timing run on one)."""
    from fusion_core.model.batch import BatchCollator

    full = next((i for i in frames if all(data[i].present(s) for s in ("rgb", "depth", "lidar", "radar"))), None)
    if full is None:
        raise ConfigError(f"{where}: no frame has every detection sensor; the cost table needs one")
    return BatchCollator(detector.config)([data[full]]).inputs


def evaluate_gate_command(args, detector, data, min_visibility: float) -> int:
    """``dyn-fusion evaluate --gate MODE [--k --gamma --lam] [--exit-policy ...]``: one mode frame
    by frame (batch 1, as on the robot): mAP per condition, joules and ms per frame, usage."""
    from fusion_core.energy.profile import load_device_profile
    from fusion_core.evaluation.compare import (
        compare_markdown,
        mode_label,
        plot_exit_histogram,
        plot_usage_heatmap,
    )
    from fusion_core.evaluation.dynamic_eval import evaluate_dynamic
    from fusion_core.gates.modules import load_gates
    from fusion_core.gates.settings import GateSettings
    from fusion_core.runtime.cost_table import measure_cost_table
    from fusion_core.runtime.dynamic_fusion import DynamicFusion

    settings = GateSettings(mode=args.gate or "static", k=args.k, gamma=args.gamma, lam_per_j=args.lam)
    gates = load_gates(args.gates, detector.config) if args.gates is not None else None
    profile = load_device_profile(args.profile)
    frames = list(range(min(len(data), args.max_frames or len(data))))
    dropout_frames = frames[:: args.dropout_every] if args.dropout_every > 0 else []
    full = _full_frame(detector, data, frames, args.data)
    table = measure_cost_table(detector, gates, full)
    try:
        fusion = DynamicFusion(detector, gates, settings, _exit_policy(args, gates, detector, full), table, profile)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    evaluation = evaluate_dynamic(fusion, data, mode_label(settings), profile, frames=frames, dropout_frames=dropout_frames,
                                  min_visibility=min_visibility)
    report = {"checkpoint": str(args.checkpoint), "gates": str(args.gates), "data": str(args.data),
              "profile": profile.name, "exit_policy": args.exit_policy, "n_frames": len(frames),
              "dropout_frames": len(dropout_frames), "min_visibility": min_visibility, "settings": vars(settings),
              **evaluation.to_json()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    markdown = compare_markdown([evaluation], profile.name)
    print("\n" + markdown)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown)
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        plot_usage_heatmap(evaluation, detector.expert_names, args.plots / "usage.png")
        plot_exit_histogram([evaluation], args.plots / "exit_histogram.png")
    print(f"results: {args.json}")
    return 0
