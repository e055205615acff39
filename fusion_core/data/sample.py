"""The one sample type every dataset yields and the model's preprocessing reads.

Everything is in ``base_link`` (x forward, y left, z up, metres) except the images, which stay
in their cameras with the geometry needed to lift or back-project them. A sensor whose data is
absent (dropped, powered off, failed to decode, not in the recording) is ``None`` and
``absence`` says why: never zeros pretending to be data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fusion_core.vocabulary import NO_RETURNS, SENSOR_SPECS

IMU_CHANNELS = ("ax_mps2", "ay_mps2", "az_mps2", "gx_radps", "gy_radps", "gz_radps")


@dataclass(frozen=True)
class CameraGeometry:
    """Pinhole intrinsics (pixels) and the camera's pose on the vehicle."""

    width_px: int
    height_px: int
    fx: float
    fy: float
    cx: float
    cy: float
    base_from_camera: tuple[tuple[float, ...], ...]  # 4x4 base_link <- optical frame (x right, y down, z forward)

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) float64 base_link <- camera transform."""
        return np.asarray(self.base_from_camera, dtype=np.float64)

    @classmethod
    def from_arrays(cls, width_px: int, height_px: int, fx: float, fy: float, cx: float, cy: float,
                    base_from_camera: np.ndarray) -> CameraGeometry:
        m = np.asarray(base_from_camera, dtype=np.float64).reshape(4, 4)
        return cls(int(width_px), int(height_px), float(fx), float(fy), float(cx), float(cy),
                   tuple(tuple(float(v) for v in row) for row in m))


# Boxes reached by fewer than this share of the simulator's geometric probe rays (4 of 75) are
# hidden behind other objects: no sensor can see them (in clear air the LiDAR puts at most 3
# points on such a box), so they are ignored, not missed.
DEFAULT_MIN_VISIBILITY = 0.05


@dataclass
class FusionSample:
    """One synchronised frame of the five sensors, with ground truth when the source has it."""

    time_s: float                               # frame time [s] on the source's clock
    lidar_xyzi: np.ndarray | None               # (N, 4) float32 base_link x, y, z [m], intensity [0, 255]
    radar_xyzdr: np.ndarray | None              # (M, 5) float32 base_link x, y, z [m], doppler [m/s], rcs [dBsm]
    depth_m: np.ndarray | None                  # (h, w) float32 z-depth along the optical axis [m], NaN = none
    depth_camera: CameraGeometry | None         # geometry of depth_m (None when depth is absent)
    rgb: np.ndarray | None                      # (H, W, 3) uint8
    rgb_camera: CameraGeometry | None           # geometry of rgb (None when rgb is absent)
    imu: np.ndarray | None                      # (K, 6) float32 IMU_CHANNELS, oldest first, window ending at time_s
    absence: dict[str, str] = field(default_factory=dict)  # sensor -> reason, only for absent sensors
    gt_boxes: np.ndarray | None = None          # (B, 11) float32 fusion_core.boxes layout in base_link; None = unknown
    gt_visibility: np.ndarray | None = None     # (B,) float32 geometric visibility in [0, 1]; None = unknown (all visible)
    condition: str | None = None                # weather label from the source (training and evaluation only)
    faults: dict[str, str] = field(default_factory=dict)  # sensor -> fault kind active at time_s (labels only)

    def present(self, sensor: str) -> bool:
        return sensor not in self.absence

    def gt_hidden(self, min_visibility: float = DEFAULT_MIN_VISIBILITY) -> np.ndarray | None:
        """(B,) bool: ground-truth boxes too occluded for any sensor (visibility below
        ``min_visibility``); they are neither targets nor misses. None when there is no ground truth."""
        if self.gt_boxes is None:
            return None
        if self.gt_visibility is None:
            return np.zeros(len(self.gt_boxes), bool)
        return np.asarray(self.gt_visibility) < min_visibility

    def without(self, sensor: str, reason: str) -> FusionSample:
        """A copy with ``sensor`` absent for ``reason`` (training-time sensor dropout, gating)."""
        attrs = SENSOR_SPECS[sensor].fields
        kwargs = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in attrs:
            kwargs[name] = None
        kwargs["absence"] = {**self.absence, sensor: reason}
        return FusionSample(**kwargs)

    def without_empty_ranging(self) -> FusionSample:
        """The sample with a LiDAR cloud of no points, or a depth image of no valid pixel, made
        absent (``NO_RETURNS``). A ranging sensor whose beams reach the ground always returns
        something; one that returns nothing is blocked or broken, and fusing it as "present" sends
        gates to an expert that sees an empty world. (A radar with no targets is a valid answer.)"""
        out = self
        if out.lidar_xyzi is not None and len(out.lidar_xyzi) == 0:
            out = out.without("lidar", NO_RETURNS)
        if out.depth_m is not None and not bool(np.any(np.isfinite(out.depth_m) & (out.depth_m > 0))):
            out = out.without("depth", NO_RETURNS)
        return out


def mix_key(condition: str, faults: dict[str, str]) -> str:
    """``night+radar:noise_burst+rgb:frozen``: a condition and its sensor -> fault kind, by sensor."""
    return "+".join((condition, *(f"{s}:{k}" for s, k in sorted(faults.items()))))


def frame_groups(sample: FusionSample) -> tuple[str, ...]:
    """Evaluation groups of a frame: its condition, each active fault, and the mix of both
    (``mix:<condition>+<sensor>:<kind>...``) when faults meet an adverse condition or each other."""
    groups = []
    if sample.condition:
        groups.append(f"condition:{sample.condition}")
    groups += [f"fault:{sensor}:{kind}" for sensor, kind in sorted(sample.faults.items())]
    if sample.condition and sample.faults and (len(sample.faults) > 1 or sample.condition != "clear"):
        groups.append(f"mix:{mix_key(sample.condition, sample.faults)}")
    return tuple(groups)
