"""The comparison table of gate modes: rows per condition and sensor-dropout row, columns per mode
(mAP, compute joules per frame, milliseconds per frame), as markdown and plots."""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusion_core.evaluation.dynamic_eval import ModeEvaluation
from fusion_core.gates.modes import GATES
from fusion_core.gates.settings import GateSettings


@dataclass(frozen=True)
class CompareMode:
    label: str
    settings: GateSettings


def mode_label(settings: GateSettings) -> str:
    """The column name of a mode: "static", "attention k=2", "loss λ=5", ... (``Gate.label``)."""
    return GATES[settings.mode].label(settings)


def default_modes(k_values: Sequence[int] = (1, 2, 3, 7), lams_per_j: Sequence[float] = (0.0, 1.0, 5.0, 30.0),
                  gamma: float = 0.5) -> list[CompareMode]:
    """Every registered gate, in ``GATES`` order, with the settings it is compared at
    (``Gate.compare_settings``: attention per k, loss and oracle per λ at ``gamma``)."""
    settings = [s for gate in GATES.values()
                for s in gate.compare_settings(GateSettings(), k_values=k_values, lams_per_j=lams_per_j, gamma=gamma)]
    return [CompareMode(mode_label(s), s) for s in settings]


def row_groups(evaluations: Sequence[ModeEvaluation]) -> list[str]:
    """"all", the conditions, the dropout rows, the faults, then the mixes of condition and faults
    (``data.sample.frame_groups``) present in every evaluation."""
    groups = set.intersection(*(set(e.metrics) for e in evaluations))
    cond = sorted(g for g in groups if g.startswith("condition:"))
    drop = sorted(g for g in groups if g.startswith("dropout:"))
    faults = sorted(g for g in groups if g.startswith("fault:"))
    mixes = sorted(g for g in groups if g.startswith("mix:"))
    return ["all", *cond, *drop, *faults, *mixes]


def compare_markdown(evaluations: Sequence[ModeEvaluation], energy_label: str) -> str:
    """One table per quantity (mAP, compute J per frame, ms per frame): rows groups, columns modes;
    each row's best mAP in bold."""
    groups = row_groups(evaluations)
    labels = [e.label for e in evaluations]
    header = "| group | frames | " + " | ".join(labels) + " |\n|---|---:|" + "---:|" * len(labels)
    out = []
    for title, value, fmt in (
            ("mAP (last exit reached; best in bold)", lambda e, g: e.mean_ap(g), "{:.3f}"),
            (f"compute energy per frame, mJ ({energy_label})", lambda e, g: 1e3 * e.cost[g].compute_j_per_frame, "{:.1f}"),
            ("latency per frame, ms (median, batch 1)", lambda e, g: e.cost[g].latency_ms_median, "{:.1f}")):
        lines = [f"**{title}**", "", header]
        for g in groups:
            values = [value(e, g) if g in e.cost else None for e in evaluations]
            best = max((v for v in values if v is not None), default=None) if title.startswith("mAP") else None
            cells = ["n/a" if v is None else (f"**{fmt.format(v)}**" if best is not None and v == best else fmt.format(v))
                     for v in values]
            frames = evaluations[0].cost[g].n_frames if g in evaluations[0].cost else 0
            lines.append(f"| {g} | {frames} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def energy_at_equal_map(candidate: ModeEvaluation, bound: Sequence[ModeEvaluation]) -> float | None:
    """The bound's compute energy per frame at the candidate's overall mAP, interpolated along the
    bound's (energy, mAP) points sorted by energy; None if the candidate's mAP is above them all."""
    target = candidate.mean_ap()
    points = sorted((e.cost["all"].compute_j_per_frame, e.mean_ap()) for e in bound if e.mean_ap() is not None)
    if target is None or not points:
        return None
    for (e0, m0), (e1, m1) in itertools.pairwise(points):
        if min(m0, m1) <= target <= max(m0, m1) and m1 != m0:
            return e0 + (target - m0) / (m1 - m0) * (e1 - e0)
    reachable = [e for e, m in points if m >= target]
    return min(reachable) if reachable else None


def plot_pareto(evaluations: Sequence[ModeEvaluation], path: Path, energy_label: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    families: dict[str, list[ModeEvaluation]] = {}
    for e in evaluations:
        families.setdefault(e.label.split(" ")[0], []).append(e)
    for family, members in families.items():
        pts = sorted((1e3 * m.cost["all"].compute_j_per_frame, m.mean_ap() or 0.0, m.label) for m in members)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if len(pts) > 1 else "o", label=family)
        for x, y, label in pts:
            ax.annotate(label.split(" ", 1)[1] if " " in label else "", (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xlabel(f"compute energy per frame [mJ] ({energy_label})")
    ax.set_ylabel("mAP (all frames)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Gate modes: accuracy against energy")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_usage_heatmap(evaluation: ModeEvaluation, expert_names: Sequence[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [g for g in row_groups([evaluation]) if g != "all" and not g.startswith(("fault:", "mix:"))]
    grid = np.array([[evaluation.usage[g].get(e, 0.0) for e in expert_names] for g in rows])
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(expert_names), 0.6 + 0.4 * len(rows)))
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(expert_names)), expert_names, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [g.split(":", 1)[1] if ":" in g else g for g in rows])
    for i in range(len(rows)):
        for j in range(len(expert_names)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < 0.6 else "black")
    ax.set_title(f"Expert usage: {evaluation.label} (share of frames)")
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_exit_histogram(evaluations: Sequence[ModeEvaluation], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    n = len(evaluations)
    width = 0.8 / max(1, n)
    for i, e in enumerate(evaluations):
        total = max(1, sum(e.exit_histogram))
        shares = [c / total for c in e.exit_histogram]
        ax.bar(np.arange(len(shares)) + i * width, shares, width, label=e.label)
    ax.set_xticks(np.arange(len(evaluations[0].exit_histogram)) + 0.4 - width / 2,
                  [f"exit {k}" for k in range(len(evaluations[0].exit_histogram))])
    ax.set_ylabel("share of frames")
    ax.legend(fontsize=7)
    ax.set_title("Exit taken")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
