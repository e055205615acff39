"""The dynamic-fusion commands of ``dyn-fusion``: ``train-gates`` and ``compare``, and the gate
options ``evaluate`` shares with them (``evaluate --gate MODE``: one mode, same measurements).

The gate and exit flags are generated from ``GateSettings`` and ``ExitSettings``
(``dyn_fusion.settings_flags``), and the runner comes from ``fusion_core.runtime.builder``: this
module only parses and reports. Nothing here imports torch until a command runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from dyn_fusion.output_paths import check_output
from dyn_fusion.settings_flags import add_settings_options, settings_from_args
from fusion_core.config_io import ConfigError
from fusion_core.exits.settings import ExitSettings
from fusion_core.gates.settings import GateSettings

# The README's short flags, kept beside the generated --gate-mode and --lam-per-j.
GATE_FLAG_ALIASES = {"mode": "--gate", "lam_per_j": "--lam"}


def add_gate_options(p: argparse.ArgumentParser, dropout_every: int = 4) -> None:
    """Options choosing the gates file, device profile and exit policy (shared by evaluate and compare)."""
    p.add_argument("--gates", type=Path, default=None,
                   help="trained gates (.pt) for the modes that need them (knowledge, attention, loss, oracle)")
    p.add_argument("--profile", default="jetson_orin",
                   help="device energy profile: a name in configs/energy/ or a YAML path (default jetson_orin)")
    add_settings_options(p.add_argument_group("exit policy (fusion_core.exits.settings.ExitSettings)"), ExitSettings)
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
                        "(default 0,1,5,30 for detection_loss; detection_error lies in [0, 1]: try 0,0.5,2,5)")
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
    group = p.add_argument_group("gate (fusion_core.gates.settings.GateSettings)",
                                 "--gate evaluates one gate mode frame by frame, with energy and usage "
                                 "(the modes that read a gates file need --gates)")
    add_settings_options(group, GateSettings, GATE_FLAG_ALIASES)
    add_gate_options(p, dropout_every=0)


def wants_dynamic_evaluation(args) -> bool:
    """``evaluate`` runs frame by frame when a gate or an exit policy other than the last exit is asked for."""
    return args.gate_mode is not None or settings_from_args(args, ExitSettings).policy != ExitSettings().policy


def _report_deadline(fusion) -> None:
    from fusion_core.exits.policies import DeadlineExit

    if isinstance(fusion.exit_policy, DeadlineExit):
        print("deadline policy: measured head stage times "
              + ", ".join(f"{t:.1f}" for t in fusion.exit_policy.predicted_stage_ms) + " ms")


def train_gates_command(args) -> int:
    from fusion_core.data.open_source import open_source, split_tail
    from fusion_core.gates.config import load_gates_config
    from fusion_core.gates.modules import GateModules, save_gates
    from fusion_core.gates.training import train_gates
    from fusion_core.model.batch import BatchCollator
    from fusion_core.runtime.cost_table import measure_cost_table
    from fusion_core.training.checkpoint import load_checkpoint, load_detector

    check_output(args.out, "--out")
    detector = load_detector(args.checkpoint)
    train_config = load_checkpoint(args.checkpoint).train_config
    gates = GateModules(load_gates_config(args.config), detector.config)
    data = open_source(args.data)
    # The exits are calibrated on the tail the detector's training held out (its validation frames).
    val_fraction = train_config.val_fraction if train_config is not None else 0.1
    _train_part, held_out = split_tail(data, val_fraction)
    from fusion_core.vocabulary import DETECTION_SENSORS

    full = next((held_out[i] for i in range(len(held_out))
                 if all(held_out[i].present(s) for s in DETECTION_SENSORS)), None)
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
    from fusion_core.data.open_source import (
        open_source,
        source_drops,
        source_error,
        source_error_note,
        source_warnings,
        spread_indices,
    )
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
    from fusion_core.gates.modes import GATES
    from fusion_core.gates.modules import load_gates
    from fusion_core.runtime.builder import build_dynamic_fusion, reference_inputs
    from fusion_core.training.checkpoint import load_detector

    check_output(args.out, "--out", folder=True)
    exit_settings = settings_from_args(args, ExitSettings)
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
        modes = [m for m in modes if not GATES[m.settings.mode].needs_gates]
        print("no --gates: comparing " + " and ".join(g.name for g in GATES.values() if not g.needs_gates) + " only")
    frames = spread_indices(len(data), args.max_frames)
    dropout_frames = frames[:: args.dropout_every] if args.dropout_every > 0 else []
    fusion = build_dynamic_fusion(detector, gates, GateSettings(), exit_settings, profile,
                                  reference_inputs(data, frames, detector, args.data))
    _report_deadline(fusion)
    table = fusion.cost_table
    evaluations = []
    for mode in modes:
        fusion.set_settings(mode.settings)
        evaluations.append(evaluate_dynamic(fusion, data, mode.label, profile, frames=frames,
                                            dropout_frames=dropout_frames))
        e = evaluations[-1]
        print(f"{mode.label:18s} mAP {e.mean_ap() or 0:.3f}  compute {1e3 * e.cost['all'].compute_j_per_frame:7.2f} mJ/frame"
              f"  {e.cost['all'].latency_ms_median:6.1f} ms/frame")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"checkpoint": str(args.checkpoint), "gates": str(args.gates), "data": str(args.data),
              "source_drops": source_drops(data), "source_error": source_error(data),
              "source_warnings": source_warnings(data), "profile": profile.name,
              "exit_policy": exit_settings.policy, "n_frames": len(frames),
              "dropout_frames": len(dropout_frames), "cost_table_flops": table.to_json(),
              "modes": [{"settings": vars(m.settings), **e.to_json()} for m, e in zip(modes, evaluations)]}
    oracles = [e for e in evaluations if e.label.startswith("oracle")]
    if oracles:
        report["oracle_energy_at_equal_map_j"] = {e.label: energy_at_equal_map(e, oracles) for e in evaluations
                                                  if not e.label.startswith("oracle")}
    (args.out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
    markdown = source_error_note(data) + compare_markdown(evaluations, profile.name)
    (args.out / "compare.md").write_text(markdown)
    plot_pareto(evaluations, args.out / "pareto.png", profile.name)
    for e in evaluations:
        if e.label.startswith(("attention k=3", "loss", "knowledge")):
            safe = e.label.replace(" ", "_").replace("=", "").replace("λ", "lam")
            plot_usage_heatmap(e, detector.expert_names, args.out / f"usage_{safe}.png")
    plot_exit_histogram(evaluations, args.out / "exit_histogram.png")
    print("\n" + markdown)
    print(f"results: {args.out / 'compare.json'}, {args.out / 'compare.md'}, plots in {args.out}")
    return 0


def evaluate_gate_command(args, detector, data, min_visibility: float) -> int:
    """``dyn-fusion evaluate --gate MODE [--k --gamma --lam] [--exit-policy ...]``: one mode frame
    by frame (batch 1, as on the robot): mAP per condition, joules and ms per frame, usage."""
    from fusion_core.data.open_source import source_drops, source_error, source_error_note, source_warnings
    from fusion_core.energy.profile import load_device_profile
    from fusion_core.evaluation.compare import (
        compare_markdown,
        mode_label,
        plot_exit_histogram,
        plot_usage_heatmap,
    )
    from fusion_core.evaluation.dynamic_eval import evaluate_dynamic
    from fusion_core.gates.modules import load_gates
    from fusion_core.runtime.builder import build_dynamic_fusion, reference_inputs

    settings = settings_from_args(args, GateSettings)
    exit_settings = settings_from_args(args, ExitSettings)
    gates = load_gates(args.gates, detector.config) if args.gates is not None else None
    profile = load_device_profile(args.profile)
    frames = list(range(min(len(data), args.max_frames or len(data))))
    dropout_frames = frames[:: args.dropout_every] if args.dropout_every > 0 else []
    fusion = build_dynamic_fusion(detector, gates, settings, exit_settings, profile,
                                  reference_inputs(data, frames, detector, args.data))
    _report_deadline(fusion)
    evaluation = evaluate_dynamic(fusion, data, mode_label(settings), profile, frames=frames, dropout_frames=dropout_frames,
                                  min_visibility=min_visibility)
    report = {"checkpoint": str(args.checkpoint), "gates": str(args.gates), "data": str(args.data),
              "source_drops": source_drops(data), "source_error": source_error(data),
              "source_warnings": source_warnings(data), "profile": profile.name,
              "exit_policy": exit_settings.policy, "n_frames": len(frames),
              "dropout_frames": len(dropout_frames), "min_visibility": min_visibility, "settings": vars(settings),
              **evaluation.to_json()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    markdown = source_error_note(data) + compare_markdown([evaluation], profile.name)
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
