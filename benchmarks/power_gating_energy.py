"""Sensor power gating on the default scenario, offline: total energy (sensors + compute) and mAP of
the loss gate with sensor pricing and a SensorPowerManager, against the always-on static stack.
Writes JSON and prints a markdown table.

    .venv/bin/python benchmarks/power_gating_energy.py [--frames 300] [--lams 0.3,0.5,1]
        [--context-change-min-s 0.5] [--standby-after-s 2 --recheck-period-s 10 --recheck-duration-s 1]
        [--oracle] [--check 10] [--data data/test]

The frames are the default scenario (``configs/scenarios/default.yaml``, its seed), simulated into
a temporary shard folder (``--data`` reads a shard folder or collection instead; the manager
restarts with each recording of a collection). Each run replays them frame by frame as
``ros_nodes/fusion_pipeline.py`` does with power gating on: the manager's ``available_sensors``
restricts the frame to the sensors that are on and past warm-up (the others are removed from the
sample, so stems, context signals and gate features see them absent), the gate chooses among the
configurations left, the chosen experts' sensors are "needed", and ``SensorPowerManager.update``
(with the context head's condition and degraded sensors) decides the standby and wake-up
commands, which act from the next frame. A sensor costs its profile power for every frame it is
not in standby (warming included); compute is the cost table's FLOPs of what ran (exit policy
``last``). ``static`` keeps every sensor on and runs every expert.

Runs: static always on; the shipped gate (loss, λ = 5 on compute only) and the sensor-priced gate
at λ = 0.5 under configs/vehicle.yaml's power section as it is; then the sensor-priced gate at
each ``--lams`` under the power settings given on the command line (by default vehicle.yaml's
plus ``context_change_min_s`` 0.5).

The gate's work is shared between runs: per frame, the stems, context head and loss predictions
are computed once per set of available sensors, and the head once per set of active experts;
the choice itself is ``DynamicFusion.configuration_energy`` + ``choose_configuration``, the code
``run_frame`` uses. ``--check N`` compares the first N frames of every run against
``DynamicFusion.run_frame`` on the same restricted samples (configuration, experts, components
and boxes must agree).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_file import write_result
from fusion_core.boxes import empty_boxes
from fusion_core.data.sample import FusionSample, frame_groups
from fusion_core.energy.ledger import frame_energy
from fusion_core.energy.profile import DeviceProfile, load_device_profile
from fusion_core.exits.settings import ExitSettings
from fusion_core.gates.frame_target import frame_target
from fusion_core.gates.loss_gate import choose_configuration, pessimistic_loss
from fusion_core.gates.modes import FALLBACK_CONFIGURATION, unfamiliar_input
from fusion_core.gates.modules import gate_features, load_gates
from fusion_core.gates.settings import GateSettings
from fusion_core.metrics.average_precision import DetectionEvaluator
from fusion_core.metrics.model_eval import in_region
from fusion_core.model.batch import BatchCollator
from fusion_core.model.decode import decode_exit
from fusion_core.runtime.builder import build_dynamic_fusion, reference_inputs
from fusion_core.runtime.dynamic_fusion import DynamicFusion
from fusion_core.runtime.power_gating import PowerGatingConfig, SensorPowerManager
from fusion_core.training.checkpoint import load_detector
from fusion_core.vocabulary import (
    CONTEXT_COMPONENT,
    DETECTION_SENSORS,
    HEAD_ENTRY_COMPONENT,
    SENSORS,
    exit_component,
    expert_component,
    gate_component,
    stem_component,
)

# configs/vehicle.yaml's power section (warmup_s 0.3 there; PowerGatingConfig's own default is 0.2).
VEHICLE_POWER = PowerGatingConfig(enabled=True, standby_after_s=2.0, recheck_period_s=10.0, recheck_duration_s=1.0,
                                  warmup_s=0.3)


@dataclass(frozen=True)
class Run:
    """One replay: gate settings, power gating (None: every sensor always on) and, for analysis,
    a configuration forced on every frame instead of the gate's choice."""

    label: str
    settings: GateSettings
    power: PowerGatingConfig | None = None
    fixed_configuration: str | None = None


# ---------------------------------------------------------------------------------------------- one frame
class _View:
    """One frame with only ``sensors`` (detection sensors) delivering: what every run that sees this
    set shares (stems, context, predicted losses, the head per active-expert set)."""

    def __init__(self, fusion: DynamicFusion, collator: BatchCollator, sample: FusionSample, sensors: frozenset[str]):
        for s in DETECTION_SENSORS:
            if s not in sensors and sample.present(s):
                sample = sample.without(s, "standby")
        self.fusion, self.sample = fusion, sample
        self.sensors = sensors
        self.batch = collator([sample])
        det, gates = fusion.detector, fusion.gates
        with torch.no_grad():
            self.encoded = det.encode(self.batch.inputs)
            self.available = det.available_experts(self.encoded.present)  # (1, E)
            self.context = gates.context_head(self.batch.inputs)
            self.features = gate_features(self.encoded, self.context)  # (1, F)
            self.member_losses = gates.loss_predictor.member_losses(self.features)  # (1, M, C)
        self.conf_available = (self.available[:, None, :] & gates.configuration_masks[None]).any(2)  # (1, C)
        self.condition = self.context.condition_names()[0]
        self.degraded = tuple(s for s, p in zip(DETECTION_SENSORS, self.context.degraded_prob[0].tolist()) if p > 0.5)
        self._outputs: dict[int, torch.Tensor] = {}
        self._heads: dict[tuple[bool, ...], object] = {}
        self._true_loss: torch.Tensor | None = None

    def _last_exit(self, active: torch.Tensor):
        key = tuple(active[0].tolist())
        if key not in self._heads:
            det = self.fusion.detector
            with torch.no_grad():
                for k in range(active.shape[1]):
                    if bool(active[0, k]) and k not in self._outputs:
                        only = torch.zeros_like(active)
                        only[0, k] = True
                        self._outputs.update(det.expert_outputs(self.encoded, only))
                outputs = {k: o for k, o in self._outputs.items() if bool(active[0, k])}
                fused = det.combine(outputs, det.static_weights(active), self.encoded.imu_context)
                exits, _ = det.head(fused)
            self._heads[key] = exits[-1]
        return self._heads[key]

    def boxes(self, active: torch.Tensor) -> np.ndarray:
        det = self.fusion.detector
        return decode_exit(self._last_exit(active), det.config.grid, det.config.max_detections,
                           det.config.score_threshold, active.any(1))[0]

    def true_loss(self, visible: np.ndarray) -> torch.Tensor:
        """(1, C) the oracle's view: every configuration's gate target against ground truth."""
        if self._true_loss is None:
            gates, det = self.fusion.gates, self.fusion.detector
            losses = []
            for mask in gates.configuration_masks:
                active = self.available & mask[None]
                if not bool(active.any()):
                    losses.append(torch.full((1,), float("inf")))
                    continue
                with torch.no_grad():
                    losses.append(frame_target(gates.config.training.loss_target, self._last_exit(active),
                                               self.batch.targets, [visible], det.config))
            self._true_loss = torch.stack(losses, 1)
        return self._true_loss


@dataclass
class _Step:
    boxes: np.ndarray
    configuration: str | None
    active_experts: tuple[str, ...]
    components: dict[str, int]
    condition: str | None
    degraded: tuple[str, ...]


def _decide(fusion: DynamicFusion, run: Run, view: _View, visible: np.ndarray) -> _Step:
    """What ``DynamicFusion.run_frame`` does for this run on this view (exit policy last)."""
    det, gates = fusion.detector, fusion.gates
    names = det.expert_names
    n_exits = det.config.n_exits
    if not view.sensors:  # no detection sensor delivers: the pipeline runs no model
        return _Step(empty_boxes(), None, (), {}, None, ())
    components: Counter[str] = Counter()
    mode = run.settings.mode
    configuration, condition, degraded = None, None, ()
    if mode == "static":
        active = view.available
        needed = {s for k in range(len(names)) if bool(active[0, k]) for s in fusion.expert_sensors[k]}
        stems = needed & view.sensors
    else:
        stems = set(view.sensors)
        masks = gates.configuration_masks
        if run.fixed_configuration is not None:
            choice = gates.configuration_names.index(run.fixed_configuration)
        else:
            fusion.set_settings(run.settings)  # configuration_energy reads price_sensors from the settings
            energy = fusion.configuration_energy(view.available)
            if mode == "loss" and unfamiliar_input(gates.loss_predictor.scaler, view.features, run.settings):
                choice = None  # the loss gate's fallback: static fusion (FALLBACK_CONFIGURATION)
            else:
                if mode == "loss":
                    loss = pessimistic_loss(view.member_losses, masks.all(1), run.settings.spread_weight,
                                            run.settings.static_margin)
                else:
                    loss = view.true_loss(visible)
                choice = int(choose_configuration(loss, view.conf_available, energy, run.settings.gamma,
                                                  run.settings.lam_per_j)[0])
        if mode == "loss":
            components[CONTEXT_COMPONENT] += 1
            components[gate_component("loss")] += 1
            condition, degraded = view.condition, view.degraded
        if choice is None:
            configuration, active = FALLBACK_CONFIGURATION, view.available
        else:
            configuration = gates.configuration_names[choice]
            active = view.available & masks[choice][None]
    for s in stems:
        components[stem_component(s)] += 1
    components[stem_component("imu")] += 1
    for k in range(len(names)):
        if bool(active[0, k]):
            components[expert_component(names[k])] += 1
    components[HEAD_ENTRY_COMPONENT] += 1
    for k in range(n_exits):
        components[exit_component(k)] += 1
    experts = tuple(n for n, on in zip(names, active[0].tolist()) if on)
    return _Step(view.boxes(active), configuration, experts, dict(components), condition, degraded)


# ---------------------------------------------------------------------------------------------- replay
class _RunState:
    def __init__(self, run: Run, classes: Sequence[str], sensors: Sequence[str]):
        self.run = run
        self.manager = SensorPowerManager(run.power, sensors) if run.power is not None else None
        self.evaluator = DetectionEvaluator(classes)
        self.compute_j: list[float] = []
        self.sensor_j: list[float] = []
        self.on_frames: Counter[str] = Counter()
        self.configurations: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()   # why sensors were woken or put in standby
        self.trace: list[dict] = []              # per frame, when asked for
        self.n_frames = 0

    def reset_power(self, sensors: Sequence[str]) -> None:
        """A new recording (collection entry): the clock starts again."""
        if self.run.power is not None:
            self.manager = SensorPowerManager(self.run.power, sensors)


def replay(fusion: DynamicFusion, source: Sequence[FusionSample], runs: Sequence[Run], profile: DeviceProfile,
           frame_period_s: float = 0.1, progress: bool = True, check_frames: int = 0,
           trace: bool = False) -> list[dict]:
    """Every run over every frame of ``source`` in lockstep; per run the summary dict."""
    det = fusion.detector
    collator = BatchCollator(det.config)
    states = [_RunState(r, det.config.classes, SENSORS) for r in runs]
    last_t = None
    started = time.perf_counter()
    for i in range(len(source)):
        sample = source[i]
        if sample.gt_boxes is None:
            continue
        t = float(sample.time_s)
        if last_t is not None and t < last_t:
            for st in states:
                st.reset_power(SENSORS)
        last_t = t
        views: dict[frozenset[str], _View] = {}
        full = None
        for st in states:
            present = {s for s in DETECTION_SENSORS if sample.present(s)}
            if st.manager is not None:
                awake = st.manager.available_sensors(t)
                standby = {s for s in SENSORS if st.manager.state(s) == "standby"}
            else:
                awake, standby = set(SENSORS), set()
            sensors = frozenset(present & awake)
            if sensors not in views:
                views[sensors] = _View(fusion, collator, sample, sensors)
            view = views[sensors]
            if full is None:
                full = view.batch
            gt = full.gt_boxes[0]
            keep = in_region(gt, det.config.grid)
            visible = gt[keep & ~full.gt_hidden[0]]
            step = _decide(fusion, st.run, view, visible)
            if i < check_frames:
                _check_against_run_frame(fusion, st.run, view, visible, step)
            st.evaluator.add_frame(step.boxes, gt[keep], frame_groups(sample), ignore=full.gt_hidden[0][keep])
            # a sensor draws power unless it stands by (warming and withheld sensors included)
            sensors_on = [s for s in SENSORS if s not in standby and (s == "imu" or sample.present(s))]
            energy = frame_energy(profile, fusion.cost_table.frame_flops(step.components), sensors_on,
                                  frame_period_s, 0.0)
            st.compute_j.append(energy.compute_total_j)
            st.sensor_j.append(energy.sensor_total_j)
            st.on_frames.update(sensors_on)
            st.n_frames += 1
            if step.configuration is not None:
                st.configurations[step.configuration] += 1
            if st.manager is not None:
                needed = {"imu"} | {s for name in step.active_experts
                                    for s in fusion.expert_sensors[det.expert_names.index(name)]}
                lost = {s for s in DETECTION_SENSORS if s not in sensors and s not in standby}
                commands = st.manager.update(t, needed, step.condition, lost | set(step.degraded))
                for c in commands:
                    st.commands[f"{c.sensor}:{c.state}"] += 1
                    st.reasons[c.reason] += 1
            if trace:
                st.trace.append({"t": round(t, 3), "sensors": sorted(sensors), "configuration": step.configuration,
                                 "condition": step.condition, "degraded": list(step.degraded),
                                 "commands": [] if st.manager is None else [f"{c.sensor}:{c.state}:{c.reason}"
                                                                             for c in commands]})
        if progress and (i + 1) % 25 == 0:
            print(f"  frame {i + 1}/{len(source)}  {time.perf_counter() - started:6.1f} s", file=sys.stderr, flush=True)
    return [_summary(st) for st in states]


def _summary(st: _RunState) -> dict:
    n = max(1, st.n_frames)
    compute, sensor = float(np.mean(st.compute_j)), float(np.mean(st.sensor_j))
    run = st.run
    metrics = st.evaluator.result()
    return {
        "label": run.label,
        "settings": vars(run.settings),
        "power_gating": None if run.power is None else dataclasses.asdict(run.power),
        "fixed_configuration": run.fixed_configuration,
        "n_frames": st.n_frames,
        "map": float(metrics["all"].mean_ap),
        "map_by_group": {g: float(m.mean_ap) for g, m in metrics.items() if g != "all"},
        "compute_j_per_frame": compute,
        "sensor_j_per_frame": sensor,
        "total_j_per_frame": compute + sensor,
        "sensor_on_share": {s: st.on_frames[s] / n for s in SENSORS},
        "configurations": {c: k / n for c, k in st.configurations.most_common()},
        "power_commands": dict(sorted(st.commands.items())),
        "power_command_reasons": dict(st.reasons.most_common()),
        **({"trace": st.trace} if st.trace else {}),
    }


def _check_against_run_frame(fusion: DynamicFusion, run: Run, view: _View, visible: np.ndarray, step: _Step) -> None:
    """The shared-work replay must choose and detect exactly what run_frame does."""
    if run.fixed_configuration is not None or not view.sensors:
        return
    fusion.set_settings(run.settings)
    result = fusion.run_frame(view.batch.inputs, view.batch.targets, visible)
    if result.configuration != step.configuration or result.active_experts != step.active_experts:
        raise AssertionError(f"{run.label}: replay chose {step.configuration} {step.active_experts}, run_frame "
                             f"{result.configuration} {result.active_experts} (sensors {sorted(view.sensors)})")
    if result.boxes.shape != step.boxes.shape or not np.allclose(result.boxes, step.boxes, atol=1e-4):
        raise AssertionError(f"{run.label}: boxes differ from run_frame (sensors {sorted(view.sensors)})")
    if dict(result.components) != step.components:
        raise AssertionError(f"{run.label}: components {step.components} != run_frame {dict(result.components)}")


# ---------------------------------------------------------------------------------------------- CLI
def default_runs(lams: Sequence[float], gamma: float, power: PowerGatingConfig, oracle: bool) -> list[Run]:
    """static always on; the shipped gate (λ = 5 on compute) and the sensor-priced gate at λ = 0.5 under
    configs/vehicle.yaml's power section as it is (context changes wake at once); then the
    sensor-priced gate at every λ of ``lams`` under ``power``."""
    runs = [Run("static, always on", GateSettings(mode="static")),
            Run("loss λ=5 compute only, vehicle.yaml power", GateSettings(mode="loss", gamma=gamma, lam_per_j=5.0),
                VEHICLE_POWER),
            Run("loss λ=0.5 +sensors, vehicle.yaml power",
                GateSettings(mode="loss", gamma=gamma, lam_per_j=0.5, price_sensors=True), VEHICLE_POWER)]
    for lam in lams:
        runs.append(Run(f"loss λ={lam:g} +sensors, power as given",
                        GateSettings(mode="loss", gamma=gamma, lam_per_j=lam, price_sensors=True), power))
    if oracle:
        runs += [Run(f"oracle λ={lam:g} +sensors, power as given (bound)",
                     GateSettings(mode="oracle", gamma=gamma, lam_per_j=lam, price_sensors=True), power) for lam in lams]
    return runs


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _default_scenario(frames: int, out: Path) -> Path:
    from sim.config import load_scenario, resolve_scenario
    from sim.session import simulate_to_path

    simulate_to_path(load_scenario(resolve_scenario("default")), frames, out, "shards", progress=False, threads=1)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="default-scenario frames (300 = make run's 30 s)")
    parser.add_argument("--data", type=Path, default=None, help="a shard folder or collection instead of the default scenario")
    parser.add_argument("--checkpoint", type=Path, default=Path("models/default.pt"))
    parser.add_argument("--gates", type=Path, default=Path("models/default_gates.pt"))
    parser.add_argument("--profile", default="jetson_orin")
    parser.add_argument("--lams", type=_floats, default=(0.3, 0.5, 1.0), help="λ of the sensor-priced loss gate runs")
    parser.add_argument("--gamma", type=float, default=0.5)
    parser.add_argument("--standby-after-s", type=float, default=VEHICLE_POWER.standby_after_s)
    parser.add_argument("--recheck-period-s", type=float, default=VEHICLE_POWER.recheck_period_s)
    parser.add_argument("--recheck-duration-s", type=float, default=VEHICLE_POWER.recheck_duration_s)
    parser.add_argument("--warmup-s", type=float, default=VEHICLE_POWER.warmup_s)
    parser.add_argument("--context-change-min-s", type=float, default=0.5,
                        help="a new estimated condition wakes standby sensors once held this long (0: at once)")
    parser.add_argument("--no-context-wake", action="store_true", help="wake_on_context_change false")
    parser.add_argument("--oracle", action="store_true", help="also the oracle with sensor pricing (a bound)")
    parser.add_argument("--check", type=int, default=0, help="compare the first N frames with DynamicFusion.run_frame")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "power_gating_energy.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    power = dataclasses.replace(VEHICLE_POWER, standby_after_s=args.standby_after_s,
                                recheck_period_s=args.recheck_period_s, recheck_duration_s=args.recheck_duration_s,
                                warmup_s=args.warmup_s, context_change_min_s=args.context_change_min_s,
                                wake_on_context_change=not args.no_context_wake)
    detector = load_detector(args.checkpoint)
    gates = load_gates(args.gates, detector.config)
    profile = load_device_profile(args.profile)
    runs = default_runs(args.lams, args.gamma, power, args.oracle)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        from fusion_core.data.open_source import open_source

        data = args.data if args.data is not None else _default_scenario(args.frames, Path(tmp) / "default")
        source = open_source(data)
        full = reference_inputs(source, range(len(source)), detector, data)
        fusion = build_dynamic_fusion(detector, gates, GateSettings(), ExitSettings(), profile, full)
        results = replay(fusion, source, runs, profile, check_frames=args.check)
    wall_s = time.perf_counter() - started
    static = results[0]
    for r in results:
        r["total_vs_static"] = r["total_j_per_frame"] / static["total_j_per_frame"]
        r["map_vs_static"] = r["map"] - static["map"]
        r["meets_target"] = r["total_vs_static"] <= 0.60 and r["map_vs_static"] >= -0.03
    data_name = str(args.data) if args.data is not None else f"default scenario (seed of configs/scenarios/default.yaml), {args.frames} frames"
    result = {"command": "python benchmarks/power_gating_energy.py " + " ".join(sys.argv[1:]),
              "data": data_name, "checkpoint": str(args.checkpoint), "gates": str(args.gates),
              "profile": profile.name, "frame_period_s": 0.1, "exit_policy": "last",
              "target": "total J/frame <= 60 % of static always-on, mAP >= static - 0.03",
              "power_as_given": dataclasses.asdict(power), "wall_s": round(wall_s, 1),
              "checked_frames_against_run_frame": args.check, "runs": results}
    write_result(args.out, result, echo=False)
    print("| run | mAP | Δ mAP | compute mJ/frame | sensor J/frame | total J/frame | vs static | "
          "on: rgb / depth / lidar / radar | target |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in results:
        on = " / ".join(f"{100 * r['sensor_on_share'][s]:.0f}%" for s in DETECTION_SENSORS)
        print(f"| {r['label']} | {r['map']:.3f} | {r['map_vs_static']:+.3f} | {1e3 * r['compute_j_per_frame']:.1f} | "
              f"{r['sensor_j_per_frame']:.3f} | {r['total_j_per_frame']:.3f} | {100 * r['total_vs_static']:.0f}% | "
              f"{on} | {'met' if r['meets_target'] else 'no'} |")
    print(f"\npower as given: standby_after_s {power.standby_after_s}, recheck_period_s {power.recheck_period_s}, "
          f"recheck_duration_s {power.recheck_duration_s}, warmup_s {power.warmup_s}, wake_on_context_change "
          f"{power.wake_on_context_change}, context_change_min_s {power.context_change_min_s}; gamma {args.gamma}")
    print(f"{len(results)} runs, {results[0]['n_frames']} frames, {wall_s:.0f} s; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
