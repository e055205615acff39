"""Run-time gate settings: the single source of their defaults, ranges and one-line docs.

k, gamma and lambda are read at every frame, so they change at run time (a ROS parameter update,
a CLI flag) without retraining anything. fusion_node's ``fusion.*`` parameters and the CLI's gate
flags are generated from this class (``fusion_core.config_io.parameter_names`` gives their names).
Importing it does not import torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fusion_core.config_io import check_fields, param
from fusion_core.gates.modes import GATES

ATTENTION_WEIGHTS: tuple[str, ...] = ("static", "gate")


@dataclass(frozen=True)
class GateSettings:
    mode: str = param("static", "which gate decides the experts (oracle: offline only, reads ground truth)",
                      choices=tuple(GATES))
    k: int = param(3, "attention: experts kept per frame (top-k); 3 held the README's fault-mix rows within 0.02 of "
                   "static, 2 saves more compute and lost up to 0.09 there", lo=1, hi=64)
    gamma: float = param(0.5, "loss/oracle: keep configurations whose (predicted) loss is within gamma of the best", lo=0.0)
    lam_per_j: float = param(0.0, "loss/oracle: loss units traded per joule of compute (0 = best predicted loss)", lo=0.0)
    price_sensors: bool = param(False, "loss/oracle: lam_per_j also prices the sensors each configuration keeps on "
                                "(their power x frame period); for sensor power gating, where unused sensors "
                                "stand by (without it every sensor is on anyway)")
    attention_weights: str = param("static", "attention: how the kept experts are fused: static (the detector's static "
                                   "weights over them, so k = every expert is static fusion) or gate (HydraFusion's "
                                   "mixture-of-experts softmax of the gate's scores)", choices=ATTENTION_WEIGHTS)
    ood_z2: float = param(30.0, "attention/loss: a frame whose gate features are unlike the training frames (mean "
                          "squared z-score above this; training frames average 1) falls back to static fusion; 0 = never",
                          lo=0.0)
    spread_weight: float = param(1.0, "loss: each configuration's predicted loss is raised by this many standard "
                                 "deviations of the predictor members' disagreement about its loss relative to static "
                                 "fusion, so the gate leaves static only for a win the members agree on; 0 = their mean",
                                 lo=0.0)
    static_margin: float = param(0.0, "loss: the all-experts configuration's predicted loss is lowered by this before "
                                 "choosing, so the gate leaves static fusion only for a predicted win larger than it",
                                 lo=0.0)

    # ROS parameter fusion.gate_mode and CLI flag --gate-mode: names older than this class
    PARAMETER_NAMES: ClassVar[dict[str, str]] = {"mode": "gate_mode"}

    def __post_init__(self):
        check_fields(self)
