"""Road users that never run through each other.

Ground truth must be physically possible: two boxes never share space. Traffic is therefore
built collision-free by construction rather than checked afterwards:

* every traffic lane, and the bike lane on each side, has one speed shared by all its users,
  who start at least a safe gap apart, so nobody catches up with anybody (the road wraps round,
  so density stays constant);
* parked cars stand in the parking strip, sidewalk walkers keep to tracks of their own, and
  neither blocks a crosswalk;
* crossing pedestrians use zebra crossings and step off the kerb only when every lane they will
  be in stays clear of traffic for as long as they are in it. Traffic in a lane is periodic, so
  "clear" has a closed form; crossings are scheduled lazily as simulated time advances.

Motion is in Frenet coordinates of the road (s along, d lateral; see sim.road).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.config import ScenarioConfig
from sim.ego import EgoModel
from sim.road import Road

CAR, PEDESTRIAN, CYCLIST = 0, 1, 2

_CAR_GAP_M = 6.0          # bumper-to-bumper gap between cars in a lane
_BIKE_GAP_M = 3.0
_PARKED_GAP_M = 1.0
_WALKER_GAP_M = 0.6
_TRACK_SPACING_M = 0.8    # sidewalk tracks are this far apart laterally
_KERB_WAIT_M = 0.35       # a waiting crosser stands this far onto the sidewalk
_FIRST_TRACK_M = 1.2      # the sidewalk track nearest the kerb, clear of waiting crossers
_EGO_CENTRE_AHEAD_M = 1.4  # ego box centre ahead of base_link (rear axle)
_EGO_HALF_LENGTH_M = 2.4
_CROSSING_SAFETY_M = 2.0  # clearance a crosser keeps from a vehicle's bumper
_SEARCH_STEP_S = 0.25
_SEARCH_LIMIT_S = 600.0


def _spaced_positions(rng, count: int, gap_m: float, length_m: float) -> np.ndarray:
    """``count`` positions on a loop of ``length_m`` with every neighbour gap >= gap_m (fewer
    when they do not fit): sorted uniforms on the shortened loop plus i * gap."""
    count = min(count, int(length_m // gap_m))
    if count <= 0:
        return np.zeros(0)
    u = np.sort(rng.uniform(0.0, length_m - count * gap_m, count))
    return u + np.arange(count) * gap_m


@dataclass
class Zone:
    """A lane (or bike lane) a crosser must cross: its lateral extent and its traffic."""

    d_lo_m: float
    d_hi_m: float
    speed_mps: float          # shared by everything in the zone (signed, along s)
    s0_m: np.ndarray          # (n,) positions at t = 0
    half_length_m: np.ndarray  # (n,)


@dataclass
class Crossing:
    """One pedestrian crossing at arc length s_m, walking from side to side."""

    actor: int
    s_m: float
    speed_mps: float
    rng: np.random.Generator
    starts_s: list[float] = field(default_factory=list)  # crossing start times, in order
    first_side: int = 1                                    # kerb side (+1: d > 0) at t = 0
    searched_until_s: float = 0.0                          # no crossing can start before this
    exhausted: bool = False                                # never found a gap: waits forever


class Traffic:
    """All actors of a world: static description plus their state at any time."""

    def __init__(self, config: ScenarioConfig, road: Road, ego: EgoModel, rng: np.random.Generator,
                 crosswalks_s_m: np.ndarray):
        self.road = road
        self.ego = ego
        self.length_m = road.length_m
        self.kerb_wait_d_m = road.kerb_d_m + _KERB_WAIT_M
        rows = []        # class, l, w, h, s0, d0, vs
        self.zones: list[Zone] = []
        self._spawn_vehicles(config, rng, rows, crosswalks_s_m)
        self._spawn_walkers(config, rng, rows)
        self.crossings: list[Crossing] = []
        for s_c in crosswalks_s_m:
            for offset in ((0.0,) if rng.random() < 0.5 else (-1.0, 1.0)):
                size = (rng.uniform(0.45, 0.7), rng.uniform(0.5, 0.75), rng.uniform(1.5, 1.9))
                side = int(rng.choice((1, -1)))
                rows.append((PEDESTRIAN, *size, s_c + offset, side * self.kerb_wait_d_m, 0.0))
                self.crossings.append(Crossing(
                    actor=len(rows) - 1, s_m=float(s_c + offset), speed_mps=float(rng.uniform(1.0, 1.6)),
                    rng=np.random.default_rng(rng.integers(2**63)), first_side=side,
                    searched_until_s=float(rng.uniform(0.0, 8.0)),
                ))
        a = np.array(rows, dtype=float).reshape(-1, 7)
        self.class_id = a[:, 0].astype(int)
        self.size_lwh_m = a[:, 1:4]
        self.s0_m, self.d0_m, self.vs_mps = a[:, 4], a[:, 5], a[:, 6]

    def __len__(self) -> int:
        return len(self.class_id)

    # ------------------------------------------------------------------ spawning
    def _spawn_vehicles(self, config, rng, rows, crosswalks_s_m):
        traffic, road = config.traffic, self.road
        per_100m = self.length_m / 100.0
        n_lanes = 2 * config.road.lanes_per_direction
        lw = config.road.lane_width_m
        ego_cfg = config.ego
        ego_s_m = ego_cfg.start_s_m + _EGO_CENTRE_AHEAD_M
        for direction in (1, -1):
            for lane in range(config.road.lanes_per_direction):
                speed = direction * rng.uniform(6.0, 14.0)
                n = rng.poisson(traffic.cars_per_100m * per_100m / n_lanes)
                sizes = np.stack([rng.uniform(4.0, 5.2, n), rng.uniform(1.75, 2.05, n), rng.uniform(1.4, 1.9, n)], 1)
                s0 = _spaced_positions(rng, n, 5.2 + _CAR_GAP_M, self.length_m)
                if direction == 1 and lane == ego_cfg.lane_index:
                    # The ego's lane flows with the ego (empty if the ego changes speed), and
                    # nothing starts on top of it.
                    speed = ego_cfg.speed_mps
                    gap = np.abs(np.mod(s0 - ego_s_m + self.length_m / 2, self.length_m) - self.length_m / 2)
                    keep = gap > _EGO_HALF_LENGTH_M + 2.6 + _CAR_GAP_M
                    if ego_cfg.acceleration_mps2 != 0.0 or speed == 0.0:
                        keep[:] = False
                    s0 = s0[keep]
                sizes = sizes[: len(s0)]
                d = road.lane_center_d(lane, direction)
                for s, size in zip(s0, sizes):
                    rows.append((CAR, *size, s, d + rng.normal(0, 0.1), speed))
                lo = min(d - direction * lw / 2, d + direction * lw / 2)
                self.zones.append(Zone(lo, lo + lw, speed, s0, sizes[: len(s0), 0] / 2))
            # Bike lane of this driving direction.
            speed = direction * rng.uniform(3.5, 6.5)
            n = rng.poisson(traffic.cyclists_per_100m * per_100m / 2)
            s0 = _spaced_positions(rng, n, 1.9 + _BIKE_GAP_M, self.length_m)
            sizes = np.stack([rng.uniform(1.6, 1.9, len(s0)), rng.uniform(0.55, 0.75, len(s0)),
                              rng.uniform(1.6, 1.85, len(s0))], 1)
            d = road.bike_lane_d(direction)
            for s, size in zip(s0, sizes):
                rows.append((CYCLIST, *size, s, d, speed))
            half = config.road.bike_lane_width_m / 2
            self.zones.append(Zone(d - half, d + half, speed, s0, sizes[:, 0] / 2))
            # Parked cars, clear of the crosswalks.
            n = rng.poisson(traffic.parked_cars_per_100m * per_100m / 2)
            s0 = _spaced_positions(rng, n, 5.2 + _PARKED_GAP_M, self.length_m)
            if len(crosswalks_s_m):
                s0 = s0[np.min(np.abs(s0[:, None] - crosswalks_s_m[None, :]), axis=1) > 5.0]
            for s in s0:
                size = (rng.uniform(4.0, 5.2), rng.uniform(1.75, 2.05), rng.uniform(1.4, 1.9))
                rows.append((CAR, *size, s, road.parking_d(direction), 0.0))
        self.ego_lane_d = (road.lane_center_d(ego_cfg.lane_index, 1) - lw / 2, road.lane_center_d(ego_cfg.lane_index, 1) + lw / 2)

    def _spawn_walkers(self, config, rng, rows):
        """Sidewalk pedestrians on lateral tracks: the one nearest the kerb stands, the others
        walk one way each; within a track everybody keeps the same speed."""
        sidewalk = config.road.sidewalk_width_m
        n_tracks = max(1, int((sidewalk - _FIRST_TRACK_M - 0.4) // _TRACK_SPACING_M) + 1)
        per_100m = self.length_m / 100.0
        for side in (1, -1):
            for track in range(n_tracks):
                d = side * (self.road.kerb_d_m + _FIRST_TRACK_M + track * _TRACK_SPACING_M)
                speed = 0.0 if track == 0 else float(rng.choice((1, -1)) * rng.uniform(0.9, 1.5))
                n = rng.poisson(config.traffic.pedestrians_per_100m * per_100m / (2 * n_tracks))
                for s in _spaced_positions(rng, n, 0.7 + _WALKER_GAP_M, self.length_m):
                    size = (rng.uniform(0.45, 0.7), rng.uniform(0.5, 0.75), rng.uniform(1.5, 1.9))
                    rows.append((PEDESTRIAN, *size, s, d, speed))

    # ------------------------------------------------------------------ crossings
    def _zone_clear(self, zone: Zone, s_c: float, t_from: float, t_to: float) -> bool:
        """No vehicle of ``zone`` comes within its half-length + safety of s_c during [t_from, t_to]."""
        if len(zone.s0_m) == 0:
            return True
        v = zone.speed_mps
        if v == 0.0:
            return bool(np.all(np.abs(zone.s0_m - s_c) > zone.half_length_m + 0.4 + _CROSSING_SAFETY_M))
        period = self.length_m / abs(v)
        # Time at which each vehicle's centre first passes s_c (going its way), mod the period.
        ahead = (s_c - zone.s0_m) if v > 0 else (zone.s0_m - s_c)
        t0 = np.mod(ahead, self.length_m) / abs(v)
        half_t = (zone.half_length_m + 0.4 + _CROSSING_SAFETY_M) / abs(v)
        k = np.ceil((t_from - half_t - t0) / period)
        t_pass = t0 + k * period
        return not np.any(t_pass - half_t < t_to)

    def _occupancy_s(self, c: Crossing, from_side: int, d_lo_m: float, d_hi_m: float) -> tuple[float, float]:
        """Times after stepping off at which the crosser's body (half-width 0.4 m) is inside the
        lateral band [d_lo, d_hi]: d(tau) = d_start - from_side * v * tau."""
        d_start = from_side * self.kerb_wait_d_m
        velocity = -from_side * c.speed_mps
        a, b = ((d_lo_m - 0.4) - d_start) / velocity, ((d_hi_m + 0.4) - d_start) / velocity
        return min(a, b), max(a, b)

    def _crossing_clear(self, c: Crossing, t_start: float, from_side: int) -> bool:
        """Every zone is clear while the crosser is inside it, and so is the ego's lane."""
        for zone in self.zones:
            a, b = self._occupancy_s(c, from_side, zone.d_lo_m, zone.d_hi_m)
            if not self._zone_clear(zone, c.s_m, t_start + a, t_start + b):
                return False
        # The ego is not part of the lane traffic (it may change speed): check it directly.
        a, b = self._occupancy_s(c, from_side, *self.ego_lane_d)
        s_from = self.ego.state(max(0.0, t_start + a)).s_m + _EGO_CENTRE_AHEAD_M
        s_to = self.ego.state(max(0.0, t_start + b)).s_m + _EGO_CENTRE_AHEAD_M
        margin = _EGO_HALF_LENGTH_M + 0.4 + _CROSSING_SAFETY_M
        return not (s_from - margin < c.s_m < s_to + margin)

    def _duration_s(self, c: Crossing) -> float:
        return 2 * self.kerb_wait_d_m / c.speed_mps

    def _extend(self, c: Crossing, until_s: float) -> None:
        """Schedule crossings until one is known to start after ``until_s``."""
        while not c.exhausted and c.searched_until_s <= until_s:
            side = c.first_side * (-1) ** len(c.starts_s)
            t, limit = c.searched_until_s, c.searched_until_s + _SEARCH_LIMIT_S
            while t < limit and not self._crossing_clear(c, t, side):
                t += _SEARCH_STEP_S
            if t >= limit:
                c.exhausted = True
                return
            c.starts_s.append(t)
            c.searched_until_s = t + self._duration_s(c) + float(c.rng.uniform(2.0, 12.0))

    # ------------------------------------------------------------------ state
    def frenet_state(self, t_s: float):
        """(s, d, vs, vd, facing) of every actor at t: Frenet position and velocity, and for
        stationary crossers the side they face (+1 towards +d, -1 towards -d, 0 along s)."""
        s = np.mod(self.s0_m + self.vs_mps * t_s, self.length_m)
        d = self.d0_m.copy()
        vs = self.vs_mps.copy()
        vd = np.zeros(len(self))
        facing = np.zeros(len(self))
        for c in self.crossings:
            self._extend(c, t_s)
            k = int(np.searchsorted(c.starts_s, t_s, side="right")) - 1
            side = c.first_side * (-1) ** max(k, 0)
            if k < 0:
                d[c.actor], facing[c.actor] = side * self.kerb_wait_d_m, -side
                continue
            tau = t_s - c.starts_s[k]
            if tau < self._duration_s(c):
                d[c.actor] = side * self.kerb_wait_d_m - side * c.speed_mps * tau
                vd[c.actor] = -side * c.speed_mps
            else:  # arrived: waits on the far kerb, facing back across
                d[c.actor], facing[c.actor] = -side * self.kerb_wait_d_m, side
        return s, d, vs, vd, facing
