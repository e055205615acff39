"""Road centreline: consecutive constant-curvature stretches, sampled densely for lookup.

Positions along the road are given in Frenet coordinates (s: arc length in m, d: lateral offset
in m, positive to the left of the driving direction of increasing s).
"""
from __future__ import annotations

import numpy as np

from fusion_core.config_io import ConfigError
from sim.config import RoadConfig

_STEP_M = 0.25
# Buildings stand up to this far beyond the sidewalk (setback + depth; see sim.world).
ROADSIDE_DEPTH_M = 22.0


class Road:
    """Centreline lookup: (s, d) -> world (x, y) and heading, vectorised."""

    def __init__(self, config: RoadConfig):
        self.config = config
        lengths = np.array([seg.length_m for seg in config.segments])
        curvatures = np.array([seg.curvature_1pm for seg in config.segments])
        self.length_m = float(lengths.sum())
        n = int(np.ceil(self.length_m / _STEP_M)) + 1
        self._s = np.linspace(0.0, self.length_m, n)
        seg_index = np.minimum(np.searchsorted(np.cumsum(lengths), self._s, side="right"), len(lengths) - 1)
        self._curvature = curvatures[seg_index]
        ds = np.diff(self._s)
        heading = np.concatenate([[0.0], np.cumsum(self._curvature[:-1] * ds)])
        # Midpoint heading integration keeps arcs round to well under a centimetre per km.
        mid = heading[:-1] + 0.5 * self._curvature[:-1] * ds
        self._x = np.concatenate([[0.0], np.cumsum(np.cos(mid) * ds)])
        self._y = np.concatenate([[0.0], np.cumsum(np.sin(mid) * ds)])
        self._heading = heading
        self._check_geometry()

    @property
    def corridor_half_width_m(self) -> float:
        """Centre line to the back of the furthest building."""
        return self.kerb_d_m + self.config.sidewalk_width_m + ROADSIDE_DEPTH_M

    def _check_geometry(self) -> None:
        """Refuse roads whose roadside folds over itself: bends tighter than the corridor, or a
        road that comes back within a corridor width of itself (a loop)."""
        corridor = self.corridor_half_width_m
        for i, seg in enumerate(self.config.segments):
            if seg.curvature_1pm != 0.0 and 1.0 / abs(seg.curvature_1pm) < corridor + 3.0:
                raise ConfigError(
                    f"road.segments[{i}].curvature_1pm: radius {1 / abs(seg.curvature_1pm):.1f} m is tighter than the "
                    f"roadside corridor ({corridor:.1f} m from the centre line); use |curvature| <= "
                    f"{1 / (corridor + 3.0):.4f}")
        # Sample every 5 m (coarser on very long roads, so the pairwise check stays small).
        step = max(1, int(max(5.0, self.length_m / 2000.0) / _STEP_M))
        x, y, s = self._x[::step], self._y[::step], self._s[::step]
        dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        far_along = np.abs(s[:, None] - s[None, :]) > 4.0 * corridor
        close = far_along & (dist < 2.0 * corridor)
        if close.any():
            i, j = np.argwhere(close)[0]
            raise ConfigError(
                f"road.segments: the road comes back within {dist[i, j]:.0f} m of itself (s = {s[i]:.0f} m and "
                f"{s[j]:.0f} m), closer than two roadside corridors ({2 * corridor:.0f} m); shorten the bends")

    # Lateral zones on each side, from the centre line out: traffic lanes, a bike lane, a
    # parking strip, the kerb, the sidewalk. Right-hand traffic: direction +1 (towards +s)
    # drives on the side with d < 0.
    @property
    def lanes_half_width_m(self) -> float:
        """Centre line to the outer edge of the traffic lanes."""
        return self.config.lane_width_m * self.config.lanes_per_direction

    @property
    def kerb_d_m(self) -> float:
        """Centre line to the kerb (lanes + bike lane + parking strip)."""
        c = self.config
        return self.lanes_half_width_m + c.bike_lane_width_m + c.parking_width_m

    def lane_center_d(self, lane_index: int, direction: int = 1) -> float:
        """Lateral offset of a lane centre for a driving direction (+1 towards +s, -1 back)."""
        return -direction * (lane_index + 0.5) * self.config.lane_width_m

    def bike_lane_d(self, direction: int) -> float:
        return -direction * (self.lanes_half_width_m + 0.5 * self.config.bike_lane_width_m)

    def parking_d(self, direction: int) -> float:
        return -direction * (self.kerb_d_m - 0.5 * self.config.parking_width_m)

    def curvature(self, s_m: np.ndarray | float) -> np.ndarray:
        """Centreline curvature (1/m) at arc length s."""
        return np.interp(s_m, self._s, self._curvature)

    def pose(self, s_m: np.ndarray | float, d_m: np.ndarray | float = 0.0):
        """World (x, y, heading) of Frenet points; arrays broadcast."""
        s = np.clip(s_m, 0.0, self.length_m)
        h = np.interp(s, self._s, self._heading)
        x = np.interp(s, self._s, self._x) - np.sin(h) * d_m
        y = np.interp(s, self._s, self._y) + np.cos(h) * d_m
        return x, y, h

    def strip(self, d_left_m: float, d_right_m: float, s_from_m: float, s_to_m: float, step_m: float = 2.0):
        """Triangle mesh (vertices (V, 3) without z, triangles (T, 3)) of the band between two
        lateral offsets over [s_from, s_to], for ground shading."""
        s = np.arange(max(0.0, s_from_m), min(self.length_m, s_to_m) + step_m, step_m)
        s = np.minimum(s, self.length_m)
        xl, yl, _ = self.pose(s, d_left_m)
        xr, yr, _ = self.pose(s, d_right_m)
        verts = np.stack([np.concatenate([xl, xr]), np.concatenate([yl, yr])], axis=1)
        n = len(s)
        i = np.arange(n - 1)
        tris = np.concatenate([np.stack([i, i + n, i + 1], 1), np.stack([i + 1, i + n, i + n + 1], 1)])
        return verts, tris
