"""The pictures of a stack run, drawn from the files its nodes left in the run folder
(``frames.jsonl``, ``ground_truth.jsonl``; ``ros_nodes.run_record``):

- ``timeline.png``: per frame, over the run's time: power by component (sensors, stems, experts,
  head, gate), the latency from sensor stamp to published detections, which experts the gate
  ran, and the exit taken;
- ``bev.png``: a bird's-eye view of a few frames spread over the run, the published detections
  (filled, by class) over the ground truth in the model's detection region (outlines).

Each picture is skipped when the run left nothing to draw it from (no frame, no ground truth).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fusion_core.boxes import CLASS_ID, CLASS_NAMES, box_corners_bev, boxes_from_records
from fusion_core.metrics.model_eval import in_region
from fusion_core.model.config import BevGridConfig

_NS = 1_000_000_000
CLASS_COLOURS = {"car": "tab:blue", "pedestrian": "tab:orange", "cyclist": "tab:green"}
COMPONENT_GROUPS = ("sensor", "stem", "expert", "head", "exit", "gate", "context")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _group(component: str) -> str:
    """``expert:lidar`` -> ``expert``; the head's entry and its stages count as ``head``."""
    kind = component.split(":", 1)[0]
    return "head" if kind in ("head", "exit") else kind


def plot_timeline(frames: list[dict], path: Path, frame_period_s: float = 0.1) -> Path | None:
    """``timeline.png`` of the frame records ``frames`` (see the module doc); None without frames."""
    if not frames:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t_s = (np.array([f["stamp_ns"] for f in frames], np.float64) - frames[0]["stamp_ns"]) / _NS
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 2, 1]})
    # power: joules per frame spread over the frame period
    groups = ("sensor", "stem", "expert", "head", "gate", "context")
    power = {g: np.zeros(len(frames)) for g in groups}
    for i, f in enumerate(frames):
        power["sensor"][i] = f.get("sensor_j", 0.0) / frame_period_s
        for component, joules in (f.get("compute_j_by_component") or {}).items():
            power.setdefault(_group(component), np.zeros(len(frames)))[i] += joules / frame_period_s
    compute = {g: w for g, w in power.items() if g != "sensor" and w.any()}
    ax = axes[0]
    if compute:
        ax.stackplot(t_s, *compute.values(), labels=[f"compute: {g}" for g in compute], alpha=0.85)
    else:  # records without the breakdown: the compute total only
        ax.plot(t_s, [f.get("compute_j", 0.0) / frame_period_s for f in frames], label="compute")
    ax.set_ylabel("compute power [W]")
    ax.set_ylim(bottom=0)
    twin = ax.twinx()
    twin.plot(t_s, power["sensor"], color="black", lw=1.2, label="sensors (right axis)")
    twin.set_ylabel("sensor power [W]")
    twin.set_ylim(bottom=0)
    ax.legend(loc="lower left", fontsize=7, ncol=3)
    twin.legend(loc="lower right", fontsize=7)
    # latency
    ax = axes[1]
    ax.plot(t_s, [f.get("stamp_to_publish_ms", np.nan) for f in frames], ".-", ms=3, lw=0.8,
            label="sensor stamp -> published")
    ax.axhline(1e3 * frame_period_s, color="grey", ls="--", lw=0.8, label="frame period")
    ax.set_ylabel("latency [ms]")
    ax.legend(fontsize=7)
    # gate choice: one row per expert, a mark where it ran
    ax = axes[2]
    experts = sorted({e for f in frames for e in f.get("active_experts", ())})
    for row, expert in enumerate(experts):
        ran = [t for t, f in zip(t_s, frames) if expert in f.get("active_experts", ())]
        ax.scatter(ran, [row] * len(ran), marker="|", s=60)
    ax.set_yticks(range(len(experts)), experts, fontsize=7)
    ax.set_ylabel("experts run")
    # exit
    ax = axes[3]
    ax.step(t_s, [f.get("exit_index", 0) for f in frames], where="post")
    ax.set_ylabel("exit")
    ax.set_xlabel("time since the first frame [s]")
    n_exits = max(f.get("exit_index", 0) for f in frames) + 1
    ax.set_yticks(range(max(n_exits, 1)))
    fig.suptitle(f"{len(frames)} frames: power, latency, gate choice, exit", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bev(frames: list[dict], truth: list[dict], grid: BevGridConfig, path: Path, n_frames: int = 4,
             gt_tolerance_s: float = 0.05) -> Path | None:
    """``bev.png``: ``n_frames`` frames spread over the run, published detections over ground
    truth; None when no frame has ground truth near its stamp."""
    gt_stamps = np.array([g["stamp_ns"] for g in truth], np.int64)
    pairs = []
    for f in frames:
        boxes = f.get("published", f.get("detections"))
        if boxes is None or not len(gt_stamps):
            continue
        k = int(np.argmin(np.abs(gt_stamps - f["stamp_ns"])))
        if abs(int(gt_stamps[k]) - f["stamp_ns"]) <= gt_tolerance_s * _NS:
            gt = boxes_from_records(truth[k]["boxes"])
            pairs.append((f, boxes_from_records(boxes), gt[in_region(gt, grid)]))
    if not pairs:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Polygon

    chosen = [pairs[i] for i in np.unique(np.linspace(0, len(pairs) - 1, min(n_frames, len(pairs))).astype(int))]
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.2 * len(chosen), 4.6), squeeze=False)
    t0 = frames[0]["stamp_ns"]
    for ax, (frame, detections, gt) in zip(axes[0], chosen):
        # x forward is up, y left is left: the view from above the vehicle
        for corners in box_corners_bev(gt) if len(gt) else ():
            ax.add_patch(Polygon(corners[:, ::-1] * [-1, 1], closed=True, fill=False, ec="black", lw=1.0))
        for corners, cid in zip(box_corners_bev(detections), detections[:, CLASS_ID]) if len(detections) else ():
            colour = CLASS_COLOURS.get(CLASS_NAMES[int(cid)], "grey")
            ax.add_patch(Polygon(corners[:, ::-1] * [-1, 1], closed=True, fc=colour, ec=colour, alpha=0.55))
        ax.plot(0, 0, "k^", ms=8)
        ax.set_xlim(-grid.y_max_m, -grid.y_min_m)
        ax.set_ylim(grid.x_min_m - 2, grid.x_max_m)
        ax.set_aspect("equal")
        ax.grid(alpha=0.25)
        ax.set_xlabel("to the right [m]")
        ax.set_title(f"t = {(frame['stamp_ns'] - t0) / _NS:.1f} s: {len(detections)} published, {len(gt)} true",
                     fontsize=9)
    axes[0][0].set_ylabel("x [m] (forward)")
    handles = [Patch(fc="none", ec="black", label="ground truth")]
    handles += [Patch(fc=c, alpha=0.55, label=f"published: {name}") for name, c in CLASS_COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_run_plots(run_dir: Path, grid: BevGridConfig) -> list[Path]:
    """Both pictures of the run in ``run_dir`` (those there is something to draw for)."""
    frames = _read_jsonl(run_dir / "frames.jsonl")
    truth = _read_jsonl(run_dir / "ground_truth.jsonl")
    drawn = [plot_timeline(frames, run_dir / "timeline.png"), plot_bev(frames, truth, grid, run_dir / "bev.png")]
    return [p for p in drawn if p is not None]
