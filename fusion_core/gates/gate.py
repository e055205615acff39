"""What a gate mode is: the protocol every entry of ``fusion_core.gates.modes.GATES`` follows,
the frame it decides on and the decision it returns.

A gate declares what it needs (the trained gates file, the context head's estimate, ground
truth) and decides, for one frame, which experts run and with what weights. The runner
(``fusion_core.runtime.dynamic_fusion``) does everything around it (context head, expert fusion,
the exits, accounting) and never names a mode. Two ways of fusing cover the six modes: the chosen
experts' features are summed with the decision's weights, or, for a gate with ``late_fusion``,
each chosen expert runs the head alone and the boxes are fused.

Importing this module does not import torch: the gate settings and the CLI's choices read
``GATES``; the tensors only arrive with a frame.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import numpy as np
    import torch

    from fusion_core.gates.context_head import ContextEstimate
    from fusion_core.gates.modules import GateModules
    from fusion_core.gates.settings import GateSettings
    from fusion_core.model.detector import EncodedFrames, FusionDetector
    from fusion_core.model.inputs import ModelInputs
    from fusion_core.model.targets import DetectionTargets


@dataclass
class GateDecision:
    """Which experts run for each frame, and with what fusion weight."""

    active: torch.Tensor   # (B, E) bool
    weights: torch.Tensor  # (B, E) float: zero where inactive, summing to 1 over a frame's active experts
    configuration: str | None = None  # one frame: the gates file's configuration chosen (loss, oracle)

    def __post_init__(self):
        if self.active.shape != self.weights.shape or self.active.dim() != 2:
            raise ValueError(f"active {tuple(self.active.shape)} and weights {tuple(self.weights.shape)} must be (B, E)")


@dataclass(frozen=True, eq=False)
class GateSetup:
    """What a gate may use of its runner; fixed for the runner's lifetime."""

    detector: FusionDetector                     # the form the runner runs (its inference form)
    gates: GateModules | None                    # the trained gates file; None without one
    expert_sensors: tuple[tuple[str, ...], ...]  # (E,) the sensors each expert reads
    expert_uses_sensor: torch.Tensor             # (E, len(DETECTION_SENSORS)) bool
    single_sensor: torch.Tensor                  # (E,) bool: the expert reads one sensor
    priced: bool                                 # a cost table and a device profile give configurations joules


@dataclass(eq=False)
class GateFrame:
    """One frame (batch 1) as a gate sees it. The gate runs the stems through :meth:`encode`
    (only those it needs, or all of them when it decides from their features); the runner fuses
    the chosen experts from what that returned."""

    setup: GateSetup
    settings: GateSettings
    inputs: ModelInputs
    available: torch.Tensor                 # (1, E) bool: experts with at least one sensor present
    context: ContextEstimate | None         # the context head's estimate (gates with reads_context)
    targets: DetectionTargets | None        # ground truth: offline gates only
    visible_ground_truth: np.ndarray | None  # (G, BOX_DIM) boxes that count: offline gates only
    encoder: Callable[[set[str] | None], EncodedFrames]           # the runner's stems; it charges them
    configuration_energy: Callable[[torch.Tensor], torch.Tensor]  # (1, E) available -> (1, C) joules λ prices
    encoded: EncodedFrames | None = None

    def encode(self, sensors: set[str] | None = None) -> EncodedFrames:
        """The stems of ``sensors`` (None: every present detection sensor) and the IMU context."""
        if self.encoded is not None:
            raise RuntimeError("a gate encodes a frame once")
        self.encoded = self.encoder(sensors)
        return self.encoded

    def static_decision(self, active: torch.Tensor, configuration: str | None = None) -> GateDecision:
        """``active`` (1, E) experts with the detector's static weights renormalised over them; runs
        only the stems they read, unless the frame was encoded already."""
        if self.encoded is None:
            self.encode({s for k, on in enumerate(active[0].tolist()) if on for s in self.setup.expert_sensors[k]})
        return GateDecision(active, self.setup.detector.static_weights(active), configuration)


class Gate(ABC):
    """One gate mode. Subclasses set the class attributes and implement :meth:`decide`; the
    runner makes one instance per settings change (gates keep no state between frames)."""

    name: ClassVar[str]
    needs_gates: ClassVar[bool] = False     # reads the trained gates file (rules, networks, configurations)
    reads_context: ClassVar[bool] = False   # the runner runs the context head first (GateFrame.context)
    offline_only: ClassVar[bool] = False    # reads ground truth: an evaluation bound, refused on a robot
    late_fusion: ClassVar[bool] = False     # each chosen expert runs the head alone; the boxes are fused
    compute_component: ClassVar[str | None] = None  # cost-table name of the gate's own network, run per frame

    @classmethod
    def label(cls, settings: GateSettings) -> str:
        """The mode's column name in comparisons ("static", "attention k=2", "loss λ=5")."""
        return cls.name

    @classmethod
    def compare_settings(cls, defaults: GateSettings, *, k_values: Sequence[int], lams_per_j: Sequence[float],
                         gamma: float) -> list[GateSettings]:
        """The settings ``dyn-fusion compare`` runs this mode with, one column each; ``defaults``
        gives what the mode does not vary."""
        return [dataclasses.replace(defaults, mode=cls.name)]

    def check(self, setup: GateSetup, settings: GateSettings) -> None:
        """ValueError (one line) when this gate cannot run with ``setup`` and ``settings``."""
        if self.needs_gates and setup.gates is None:
            raise ValueError(f"gate mode {self.name!r} needs trained gates (a gates checkpoint)")

    @abstractmethod
    def decide(self, frame: GateFrame) -> GateDecision:
        """The experts to run on ``frame`` (batch 1). Encodes the frame (``frame.encode`` or
        ``frame.static_decision``) exactly once."""
