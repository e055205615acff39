"""Dynamic fusion of one frame: context -> gate -> only the chosen stems and experts -> the head,
exit by exit, until the exit policy stops -> boxes, with the components that actually ran.

The gate is the entry of ``fusion_core.gates.modes.GATES`` the settings name: it declares what it
reads (gates file, context estimate, ground truth) and decides the experts; this runner does the
rest, the same for every mode, and names none of them.

Frames run one at a time (batch 1), as on the robot: skipping is then real for every frame
(stems, experts and exits that were not chosen are not computed: ``FusionDetector.calls``
counts them), and the measured latency is the frame's own. Gate settings and the exit policy
are plain attributes, changed between frames without retraining. ``DynamicFusion.detector`` is
the detector's inference form (BatchNorm folded, channels-last), not the object passed in.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from fusion_core.box_fusion import weighted_box_fusion
from fusion_core.boxes import empty_boxes
from fusion_core.energy.profile import DeviceProfile
from fusion_core.exits.confidence import frame_confidence
from fusion_core.exits.policies import ExitPolicy, LastExit
from fusion_core.gates.gate import Gate, GateFrame, GateSetup
from fusion_core.gates.knowledge import expert_sensor_matrix
from fusion_core.gates.loss_gate import configuration_sensor_j
from fusion_core.gates.modes import GATES, StaticGate
from fusion_core.gates.modules import GateModules
from fusion_core.gates.settings import GateSettings
from fusion_core.model.decode import decode_exit
from fusion_core.model.detector import EncodedFrames, FusionDetector
from fusion_core.model.head import ExitOutput
from fusion_core.model.inference_form import inference_form
from fusion_core.model.inputs import ModelInputs
from fusion_core.model.targets import DetectionTargets
from fusion_core.runtime.cost_table import CostTable
from fusion_core.vocabulary import CONTEXT_COMPONENT, DETECTION_SENSORS, HEAD_ENTRY_COMPONENT, exit_component, expert_component, stem_component


@dataclass
class FrameResult:
    boxes: np.ndarray               # (N, 11) detections, fusion_core.boxes layout
    active_experts: tuple[str, ...]  # experts that ran (late: the single-sensor experts)
    configuration: str | None       # loss and oracle gates: the configuration chosen
    exit_index: int                 # exit whose boxes are reported (late: the deepest over the sources)
    exit_confidence: float          # frame confidence of that exit
    missed_deadline: bool
    condition_estimate: str | None  # the context head's most likely condition (None without gates)
    degraded_sensors: tuple[str, ...]  # sensors the context head believes degraded
    components: dict[str, int]      # compute component -> times it ran (cost table names)
    latency_ms: float               # wall time of the whole frame


@dataclass
class _HeadRun:
    output: ExitOutput
    exit_index: int
    confidence: float
    missed_deadline: bool


class DynamicFusion:
    def __init__(self, detector: FusionDetector, gates: GateModules | None = None,
                 settings: GateSettings | None = None, exit_policy: ExitPolicy | None = None,
                 cost_table: CostTable | None = None, profile: DeviceProfile | None = None,
                 frame_period_s: float = 0.1):
        """``frame_period_s``: the sensors' frame period; with ``settings.price_sensors`` a
        sensor costs its profile power times this per frame."""
        settings = settings or GateSettings()
        if not frame_period_s > 0:
            raise ValueError(f"frame_period_s must be > 0, got {frame_period_s!r}")
        # the folded, channels-last copy: same outputs, fewer passes (fusion_core.model.inference_form);
        # the caller's detector stays trainable
        self.detector = inference_form(detector)
        self.gates = gates.eval() if gates is not None else None
        self.settings = settings
        self.exit_policy = exit_policy or LastExit()
        self.cost_table = cost_table
        self.profile = profile
        self.expert_names = detector.expert_names
        self.expert_sensors = [ex.sensors for ex in detector.experts]
        self.expert_uses_sensor = expert_sensor_matrix(self.expert_sensors)
        self.gate_setup = GateSetup(self.detector, self.gates, tuple(self.expert_sensors), self.expert_uses_sensor,
                                    torch.tensor([len(s) == 1 for s in self.expert_sensors]),
                                    priced=cost_table is not None and profile is not None)
        self.gate = self._gate(settings)
        # Fixed for the lifetime of the runner: computed once rather than on every frame.
        self.configuration_energy_j = self._configuration_energy_j() if gates is not None else None
        # (S,) a detection sensor's energy per frame while on (the expert_uses_sensor columns).
        self.sensor_j_per_frame = torch.tensor(
            [profile.sensor_power.power_w(s) * frame_period_s if profile is not None else 0.0 for s in DETECTION_SENSORS])

    def _gate(self, settings: GateSettings) -> Gate:
        """The gate ``settings.mode`` names, checked against this runner (ValueError if it cannot run)."""
        gate = GATES[settings.mode]()
        gate.check(self.gate_setup, settings)
        return gate

    def set_settings(self, settings: GateSettings) -> None:
        """Change the gate at run time (validated first; the old settings stay on error)."""
        self.gate = self._gate(settings)
        self.settings = settings

    # ------------------------------------------------------------------ energy of choices
    def _configuration_energy_j(self) -> torch.Tensor:
        """(C,) compute energy of each configuration's experts under the device profile."""
        if self.cost_table is None or self.profile is None:
            return torch.zeros(len(self.gates.configuration_names))
        per_expert = torch.tensor([self.cost_table.flops[expert_component(n)] for n in self.expert_names], dtype=torch.float64)
        joules = per_expert / 1e9 * self.profile.compute_j_per_gflop
        return (self.gates.configuration_masks.double() * joules[None]).sum(1).float()

    def configuration_energy(self, available: torch.Tensor) -> torch.Tensor:
        """(B, C) joules the λ term charges each configuration, for frames whose available experts
        are ``available`` (B, E): its experts' compute, plus with ``settings.price_sensors`` the
        sensors its runnable experts read (``configuration_sensor_j``)."""
        energy = self.configuration_energy_j[None].expand(available.shape[0], -1)
        if not self.settings.price_sensors:
            return energy
        active = available[:, None, :] & self.gates.configuration_masks[None]  # (B, C, E)
        return energy + configuration_sensor_j(active, self.expert_uses_sensor, self.sensor_j_per_frame)

    def warm_up(self, inputs: ModelInputs) -> None:
        """Run ``inputs`` (one frame, ideally with every sensor) through every stem, expert and
        exit, then with the current settings, and forget both runs (``detector.calls`` is left as
        it was). A process's first pass through a layer pays for oneDNN's kernel set-up: without
        this the first live frame took 190 ms instead of about 80."""
        settings, gate, policy, calls = self.settings, self.gate, self.exit_policy, Counter(self.detector.calls)
        try:
            # static fusion to the last exit runs every stem, expert and exit there is
            self.settings, self.gate, self.exit_policy = GateSettings(mode=StaticGate.name), StaticGate(), LastExit()
            self.run_frame(inputs)
            if not isinstance(gate, StaticGate) and not gate.offline_only:  # an offline gate needs ground truth
                self.settings, self.gate, self.exit_policy = settings, gate, policy
                self.run_frame(inputs)
        finally:
            self.settings, self.gate, self.exit_policy = settings, gate, policy
            self.detector.calls.clear()
            self.detector.calls.update(calls)

    # ------------------------------------------------------------------ one frame
    @torch.no_grad()
    def run_frame(self, inputs: ModelInputs, targets: DetectionTargets | None = None,
                  visible_ground_truth: np.ndarray | None = None) -> FrameResult:
        """One frame (batch 1). Only offline gates (the oracle) read ground truth: ``targets`` and,
        when the gates were trained on the detection_error target, ``visible_ground_truth``
        (G, BOX_DIM), the boxes that count (in the detection region, not hidden)."""
        if inputs.batch_size != 1:
            raise ValueError(f"run_frame takes one frame, got a batch of {inputs.batch_size}")
        gate = self.gate
        start = time.perf_counter()
        components: Counter[str] = Counter()
        det = self.detector
        present = {s: inputs.sensor_present(s) for s in DETECTION_SENSORS}
        available = det.available_experts(present)
        context = None
        if gate.reads_context:
            context = self.gates.context_head(inputs)
            components[CONTEXT_COMPONENT] += 1
        frame = GateFrame(self.gate_setup, self.settings, inputs, available, context, targets, visible_ground_truth,
                          encoder=lambda sensors: self._encode(inputs, sensors, components),
                          configuration_energy=self.configuration_energy)
        decision = gate.decide(frame)
        encoded = frame.encoded
        if encoded is None:
            raise RuntimeError(f"gate {gate.name!r} decided without encoding the frame (GateFrame.encode)")
        if gate.compute_component is not None:
            components[gate.compute_component] += 1
        if gate.late_fusion:
            return self._run_late(encoded, decision.active, context, components, start)

        for k in range(len(self.expert_names)):
            if bool(decision.active[0, k]):
                components[expert_component(self.expert_names[k])] += 1
        fused = det.fuse(encoded, decision.active, decision.weights)
        run = self._run_head(fused, start, components)
        boxes = decode_exit(run.output, det.config.grid, det.config.max_detections, det.config.score_threshold,
                            decision.active.any(1))[0]
        return self._result(boxes, decision.active[0], decision.configuration, run, context, components, start)

    # ------------------------------------------------------------------ parts
    def _encode(self, inputs: ModelInputs, sensors: set[str] | None, components: Counter) -> EncodedFrames:
        encoded = self.detector.encode(inputs, sensors)
        for s in DETECTION_SENSORS:
            if encoded.stems[s] is not None:
                components[stem_component(s)] += 1
        components[stem_component("imu")] += 1
        return encoded

    def _run_head(self, fused: torch.Tensor, start: float, components: Counter) -> _HeadRun:
        head = self.detector.head
        n_exits = head.n_exits
        components[HEAD_ENTRY_COMPONENT] += 1
        x = head.entry(fused)
        outputs: list[ExitOutput] = []
        history: list[torch.Tensor] = []
        for k in range(n_exits):
            x, out = head.stage(k, x)
            self.detector.calls[exit_component(k)] += 1
            components[exit_component(k)] += 1
            history.append(frame_confidence(out, outputs[-1] if outputs else None))
            outputs.append(out)
            elapsed_ms = 1e3 * (time.perf_counter() - start)
            decision = self.exit_policy.decide(k, torch.stack(history, 1), n_exits=n_exits, elapsed_ms=elapsed_ms)
            if bool(decision.stop[0]):
                used = int(decision.exit_used[0])
                return _HeadRun(outputs[used], used, float(history[used][0]), bool(decision.missed_deadline[0]))
        raise AssertionError("the last exit always stops")  # pragma: no cover - ExitPolicy guarantees it

    def _run_late(self, encoded: EncodedFrames, chosen_experts: torch.Tensor, context, components: Counter,
                  start: float) -> FrameResult:
        """Late fusion: each of the ``chosen_experts`` (1, E) runs the head alone (its own exit
        decision); their boxes are fused and the deepest exit taken is reported."""
        det = self.detector
        chosen = [k for k, on in enumerate(chosen_experts[0].tolist()) if on]
        box_sets, runs = [], []
        active = torch.zeros_like(chosen_experts)
        for k in chosen:
            only = torch.zeros_like(chosen_experts)
            only[0, k] = True
            active |= only
            components[expert_component(self.expert_names[k])] += 1
            run = self._run_head(det.fuse(encoded, only, only.float()), start, components)
            runs.append(run)
            box_sets.append(decode_exit(run.output, det.config.grid, det.config.max_detections,
                                        det.config.score_threshold)[0])
        boxes = weighted_box_fusion(box_sets) if box_sets else empty_boxes()
        deepest = max(runs, key=lambda r: r.exit_index) if runs else None
        if deepest is None:
            return FrameResult(boxes, (), None, 0, 1.0, False, self._condition(context), self._degraded(context),
                               dict(components), 1e3 * (time.perf_counter() - start))
        return self._result(boxes, active[0], None, deepest, context, components, start,
                            missed=any(r.missed_deadline for r in runs))

    def _result(self, boxes: np.ndarray, active: torch.Tensor, configuration: str | None, run: _HeadRun, context,
                components: Counter, start: float, missed: bool | None = None) -> FrameResult:
        names = tuple(n for n, on in zip(self.expert_names, active.tolist()) if on)
        return FrameResult(boxes, names, configuration, run.exit_index, run.confidence,
                           run.missed_deadline if missed is None else missed, self._condition(context),
                           self._degraded(context), dict(components), 1e3 * (time.perf_counter() - start))

    @staticmethod
    def _condition(context) -> str | None:
        return None if context is None else context.condition_names()[0]

    @staticmethod
    def _degraded(context) -> tuple[str, ...]:
        if context is None:
            return ()
        return tuple(s for s, p in zip(DETECTION_SENSORS, context.degraded_prob[0].tolist()) if p > 0.5)
