"""Cheap per-frame signals the context head estimates the driving condition and sensor health
from: counts, ranges and image statistics that cost microseconds, computed from the raw sensor
data before any stem runs. Gates read the context head's estimate, never the simulator's label.

Why these: fog shortens the optical sensors' range (LiDAR returns beyond 30 m vanish, depth
turns invalid) while radar keeps its targets; rain and snow add near-range clutter and veil the
image (lower contrast); night darkens only the passive camera; glare saturates the image and
blinds the active-IR depth camera. A sensor that is absent contributes zeros and its flag.
"""
from __future__ import annotations

import numpy as np

from fusion_core.data.sample import FusionSample

CONTEXT_SIGNAL_NAMES: tuple[str, ...] = (
    "lidar_present", "lidar_log_points", "lidar_near_share", "lidar_far_share", "lidar_mean_intensity",
    "lidar_mean_range_10m", "lidar_azimuth_coverage",
    "radar_present", "radar_log_points", "radar_mean_rcs_10dbsm", "radar_doppler_std_10mps",
    "depth_present", "depth_valid_share", "depth_mean_10m", "depth_far_share",
    "rgb_present", "rgb_mean", "rgb_std", "rgb_saturated_share", "rgb_dark_share", "rgb_blue_minus_red",
    "rgb_edge_energy",
)
N_CONTEXT_SIGNALS = len(CONTEXT_SIGNAL_NAMES)
_INDEX = {name: i for i, name in enumerate(CONTEXT_SIGNAL_NAMES)}

_NEAR_M = 5.0   # rain and snow clutter sits within a few metres of the sensor
_FAR_M = 30.0   # dense fog removes optical returns beyond about this range
_AZIMUTH_SECTORS = 32


def _finite_rows(a: np.ndarray) -> np.ndarray:
    return a[np.all(np.isfinite(a), axis=1)]


def context_signals(sample: FusionSample) -> np.ndarray:
    """(N_CONTEXT_SIGNALS,) float32 in CONTEXT_SIGNAL_NAMES order; every value roughly in [-3, 3]."""
    out = np.zeros(N_CONTEXT_SIGNALS, np.float32)

    def put(name: str, value: float) -> None:
        out[_INDEX[name]] = value

    if sample.lidar_xyzi is not None:
        pts = _finite_rows(np.asarray(sample.lidar_xyzi, np.float32))
        put("lidar_present", 1.0)
        put("lidar_log_points", np.log1p(len(pts)) / 10.0)
        if len(pts):
            rng = np.linalg.norm(pts[:, :3], axis=1)
            put("lidar_near_share", float(np.mean(rng < _NEAR_M)))
            put("lidar_far_share", float(np.mean(rng > _FAR_M)))
            put("lidar_mean_intensity", float(pts[:, 3].mean()) / 255.0)
            put("lidar_mean_range_10m", float(rng.mean()) / 10.0)
            # An occluded or failing LiDAR leaves whole sectors empty.
            sector = ((np.arctan2(pts[:, 1], pts[:, 0]) + np.pi) / (2 * np.pi) * _AZIMUTH_SECTORS).astype(int)
            hits = np.bincount(np.clip(sector, 0, _AZIMUTH_SECTORS - 1), minlength=_AZIMUTH_SECTORS)
            put("lidar_azimuth_coverage", float(np.count_nonzero(hits)) / _AZIMUTH_SECTORS)
    if sample.radar_xyzdr is not None:
        pts = _finite_rows(np.asarray(sample.radar_xyzdr, np.float32))
        put("radar_present", 1.0)
        put("radar_log_points", np.log1p(len(pts)) / 10.0)
        if len(pts):
            put("radar_mean_rcs_10dbsm", float(pts[:, 4].mean()) / 10.0)
            put("radar_doppler_std_10mps", float(pts[:, 3].std()) / 10.0)
    if sample.depth_m is not None:
        depth = np.asarray(sample.depth_m, np.float32)
        valid = np.isfinite(depth) & (depth > 0)
        put("depth_present", 1.0)
        put("depth_valid_share", float(valid.mean()) if depth.size else 0.0)
        if valid.any():
            d = depth[valid]
            put("depth_mean_10m", float(d.mean()) / 10.0)
            put("depth_far_share", float(np.mean(d > 0.5 * _FAR_M)))
    if sample.rgb is not None and sample.rgb.size:
        # Every 4th pixel is plenty for global statistics and keeps this under a millisecond.
        img = np.asarray(sample.rgb[::4, ::4], np.float32) / 255.0
        grey = img.mean(2)
        put("rgb_present", 1.0)
        put("rgb_mean", float(grey.mean()))
        put("rgb_std", float(grey.std()))
        put("rgb_saturated_share", float(np.mean(grey > 0.95)))
        put("rgb_dark_share", float(np.mean(grey < 0.05)))
        put("rgb_blue_minus_red", float(img[..., 2].mean() - img[..., 0].mean()))
        if grey.shape[0] > 1 and grey.shape[1] > 1:
            # Veiling (fog, rain, snow) flattens local contrast before it changes the mean.
            edges = np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean()
            put("rgb_edge_energy", float(edges) * 10.0)
    return out
