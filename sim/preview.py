"""One-glance contact sheet of a simulator run: camera images, LiDAR and radar bird's-eye views
with ground truth, and IMU traces, rendered to a PNG with matplotlib's Agg canvas (no display
needed, no pyplot global state touched)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon

from fusion_core.boxes import CLASS_ID, CLASS_NAMES, box_corners_bev
from sim.readings import SimFrame

FIGSIZE_IN = (16.0, 9.0)
DPI = 100  # 1600 x 900 px
BEV_X_M = (-20.0, 60.0)   # forward range shown (base_link x)
BEV_Y_M = (-30.0, 30.0)   # lateral range shown (base_link y, left positive)
CLASS_COLOURS = {"car": "#1f77b4", "pedestrian": "#d62728", "cyclist": "#2ca02c"}
_FALLBACK_COLOUR = "#9467bd"
GROUND_Z_M = 0.25  # LiDAR points below this height (base_link) are drawn as grey ground
_EGO_FOOTPRINT = np.array([[3.8, 0.9], [-1.0, 0.9], [-1.0, -0.9], [3.8, -0.9], [4.4, 0.0]])  # base_link, m


def _to_base(points: np.ndarray, base_from_sensor: np.ndarray) -> np.ndarray:
    """(N, 3+) sensor-frame points -> (N, 3) base_link."""
    xyz = np.asarray(points[:, :3], np.float64)
    return xyz @ base_from_sensor[:3, :3].T + base_from_sensor[:3, 3]


def _absence_reason(frame: SimFrame, sensor: str) -> str:
    reasons = sorted({d.reason for d in frame.dropped if d.sensor == sensor})
    if reasons:
        return "dropped (" + ", ".join(reasons) + ")"
    return "no capture in this frame"


def _no_data(ax, title: str, reason: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_facecolor("#eeeeee")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, f"no data:\n{reason}", transform=ax.transAxes, ha="center", va="center",
            fontsize=13, color="#b00000", fontweight="bold", wrap=True)


def _class_colour(class_id: float) -> str:
    k = int(class_id)
    return CLASS_COLOURS.get(CLASS_NAMES[k], _FALLBACK_COLOUR) if 0 <= k < len(CLASS_NAMES) else _FALLBACK_COLOUR


def _bev_axes(ax, title: str) -> None:
    """Bird's-eye axes with x (forward) up and y (left) to the left, as seen from above."""
    ax.set_title(title, fontsize=10)
    ax.set_xlim(BEV_Y_M[1], BEV_Y_M[0])  # +y (left) on the left
    ax.set_ylim(*BEV_X_M)
    ax.set_aspect("equal")
    ax.set_xlabel("y [m] (left +)", fontsize=8)
    ax.set_ylabel("x [m] (forward)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, color="#dddddd", lw=0.5, zorder=0)


def _draw_boxes_and_ego(ax, boxes: np.ndarray, legend: bool) -> None:
    if len(boxes):
        for corners, cid in zip(box_corners_bev(boxes), boxes[:, CLASS_ID]):
            # Plot coordinates are (y, x): swap the BEV columns.
            ax.add_patch(Polygon(corners[:, ::-1], closed=True, fill=False, lw=1.4,
                                 edgecolor=_class_colour(cid), zorder=4))
            front = corners[[0, 3]].mean(axis=0)  # mark the heading with the front edge centre
            ax.plot([front[1]], [front[0]], marker=".", ms=3, color=_class_colour(cid), zorder=4)
    ax.add_patch(Polygon(_EGO_FOOTPRINT[:, ::-1], closed=True, facecolor="black", edgecolor="black", zorder=5))
    if legend:
        handles = [Line2D([], [], color=c, lw=2, label=n) for n, c in CLASS_COLOURS.items()]
        handles.append(Patch(facecolor="black", label="ego"))
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.85)


def _imu_series(frames: Sequence[SimFrame]) -> tuple[np.ndarray, np.ndarray]:
    rows = [(r.capture_time_s, r.data) for f in frames for r in f.readings if r.sensor == "imu"]
    if not rows:
        return np.zeros(0), np.zeros((0, 6))
    rows.sort(key=lambda x: x[0])
    return np.array([t for t, _ in rows]), np.array([d for _, d in rows], np.float64)


def _title(frame: SimFrame, simulator) -> str:
    by_kind: dict[str, list[str]] = {}
    for sensor, kind in sorted(frame.active_faults.items()):
        by_kind.setdefault(kind, []).append(sensor)
    faults = "; ".join(f"{kind} on {', '.join(sensors)}" for kind, sensors in by_kind.items()) or "none"
    name = simulator.config.name
    return (f"{name}   |   condition: {frame.condition} (severity {frame.severity:.2f})   |   "
            f"active faults: {faults}   |   frame {frame.index} at t = {frame.time_s:.2f} s")


def render_contact_sheet(frames: Sequence[SimFrame], simulator, out_path: Path) -> Path:
    """Render a 1600x900 PNG overview of ``frames`` (images and point clouds of the last
    frame, IMU traces of all frames) to ``out_path``; returns the path."""
    frames = list(frames)
    if not frames:
        raise ValueError("render_contact_sheet needs at least one frame")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    frame = frames[-1]
    cal = simulator.calibration
    cfg = simulator.config

    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    title = _title(frame, simulator)
    fig.suptitle(title, fontsize=12 if len(title) <= 140 else 10, fontweight="bold")
    W, H = FIGSIZE_IN[0] * DPI, FIGSIZE_IN[1] * DPI

    def axes_px(x0, y0, w, h):
        """Axes from a pixel rectangle (origin bottom-left of the 1600x900 sheet)."""
        return fig.add_axes((x0 / W, y0 / H, w / W, h / H))

    # RGB
    ax = axes_px(45, 600, 400, 225)
    r = frame.latest("rgb")
    if r is None:
        _no_data(ax, "RGB camera", _absence_reason(frame, "rgb"))
    else:
        ax.imshow(r.data, interpolation="nearest", aspect="equal")
        fault = f" [{r.fault}]" if r.fault else ""
        ax.set_title(f"RGB camera @ {r.capture_time_s:.2f} s{fault}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])

    # Depth
    ax = axes_px(45, 345, 370, 215)
    r = frame.latest("depth")
    if r is None:
        _no_data(ax, "Depth camera", _absence_reason(frame, "depth"))
    else:
        cmap = matplotlib.colormaps["turbo_r"].with_extremes(bad="#808080")
        d = np.ma.masked_invalid(r.data)
        im = ax.imshow(d, cmap=cmap, vmin=0.0, vmax=cfg.sensors.depth.max_range_m, interpolation="nearest")
        valid = 100.0 * np.isfinite(r.data).mean()
        fault = f" [{r.fault}]" if r.fault else ""
        ax.set_title(f"Depth @ {r.capture_time_s:.2f} s, {valid:.0f}% valid (grey = NaN){fault}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        cb = fig.colorbar(im, cax=axes_px(425, 360, 12, 185))
        cb.set_label("depth [m]", fontsize=8)
        cb.ax.tick_params(labelsize=7)

    # IMU
    t, imu = _imu_series(frames)
    imu_lost = sum(1 for f in frames for d in f.dropped if d.sensor == "imu")
    for slot, (cols, label, unit) in enumerate(((slice(0, 3), "accel", "m/s²"), (slice(3, 6), "gyro", "rad/s"))):
        ax = axes_px(80, 195 - 140 * slot, 365, 105)
        if len(t) == 0:
            reason = _absence_reason(frame, "imu")
            _no_data(ax, f"IMU {label}", reason)
            continue
        for k, (axis, colour) in enumerate(zip("xyz", ("#d62728", "#2ca02c", "#1f77b4"))):
            ax.plot(t, imu[:, cols][:, k], lw=0.8, color=colour, label=f"{label[0]}{axis}")
        ax.axvline(frame.time_s, color="black", lw=0.8, ls="--")
        ax.set_ylabel(f"{label} [{unit}]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(True, color="#dddddd", lw=0.5)
        ax.legend(loc="upper left", fontsize=6, ncol=3, framealpha=0.8, handlelength=1.2)
        if slot == 0:
            lost = f", {imu_lost} lost to faults" if imu_lost else ""
            ax.set_title(f"IMU {t[0]:.2f} .. {t[-1]:.2f} s: {len(t)} samples{lost} (dashed = shown frame)",
                         fontsize=10)
        else:
            ax.set_xlabel("time [s]", fontsize=8)

    # LiDAR BEV
    ax = axes_px(545, 190, 420, 560)
    r = frame.latest("lidar")
    if r is None:
        _no_data(ax, "LiDAR bird's-eye view", _absence_reason(frame, "lidar"))
    else:
        _bev_axes(ax, f"LiDAR BEV @ {r.capture_time_s:.2f} s: {len(r.data)} points (grey = ground)"
                      + (f" [{r.fault}]" if r.fault else ""))
        p = _to_base(r.data, cal["lidar"].base_from_sensor)
        ground = p[:, 2] < GROUND_Z_M
        ax.scatter(p[ground, 1], p[ground, 0], s=0.3, color="#c8c8c8", linewidths=0, rasterized=True, zorder=1)
        above = p[~ground]
        order = np.argsort(above[:, 2])  # draw high points last
        sc = ax.scatter(above[order, 1], above[order, 0], c=above[order, 2], s=2.5, cmap="plasma",
                        vmin=GROUND_Z_M, vmax=3.0, linewidths=0, rasterized=True, zorder=2)
        cb = fig.colorbar(sc, cax=axes_px(973, 190, 12, 560), extend="both")
        cb.set_label("height z [m] (base_link)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        _draw_boxes_and_ego(ax, frame.gt_boxes, legend=True)

    # Radar BEV
    ax = axes_px(1095, 190, 420, 560)
    r = frame.latest("radar")
    if r is None:
        _no_data(ax, "Radar bird's-eye view", _absence_reason(frame, "radar"))
    else:
        _bev_axes(ax, f"Radar BEV @ {r.capture_time_s:.2f} s: {len(r.data)} returns, coloured by Doppler"
                      + (f" [{r.fault}]" if r.fault else ""))
        p = _to_base(r.data, cal["radar"].base_from_sensor)
        dop = r.data[:, 3].astype(float)
        lim = max(1.0, float(np.nanmax(np.abs(dop))) if len(dop) else 1.0)
        sc = ax.scatter(p[:, 1], p[:, 0], c=dop, s=28, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim),
                        edgecolors="black", linewidths=0.4, zorder=3)
        cb = fig.colorbar(sc, cax=axes_px(1523, 190, 12, 560))
        cb.set_label("Doppler [m/s] (+ receding)", fontsize=8)
        cb.ax.tick_params(labelsize=7)
        _draw_boxes_and_ego(ax, frame.gt_boxes, legend=True)

    # One line of context under the bird's-eye views.
    cls = frame.gt_boxes[:, CLASS_ID].astype(int) if len(frame.gt_boxes) else np.zeros(0, int)
    counts = ", ".join(f"{int((cls == k).sum())} {n}" for k, n in enumerate(CLASS_NAMES))
    n_scans = sum(1 for x in frame.readings if x.sensor == "radar")
    fig.text(545 / W, 125 / H, f"ground truth within {cfg.detection_range_m:.0f} m: {len(frame.gt_boxes)} boxes "
             f"({counts})\nego vehicle = black shape at the origin (base_link)", fontsize=9, va="top")
    shown = " (the first is shown)" if n_scans > 1 else ""
    fig.text(1095 / W, 125 / H, f"radar scans in this frame: {n_scans}{shown}\n"
             "Doppler < 0: approaching (static world reads about -ego speed)", fontsize=9, va="top")
    fig.savefig(out_path, dpi=DPI, facecolor="white")
    return out_path
