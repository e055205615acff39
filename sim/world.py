"""Procedural world: road surfaces, buildings, poles, and moving actors with ground truth.

Geometry is held as triangle soup (T, 3, 3) with one object index per triangle, so building
the ray-casting mesh for any instant is a slice of the static soup plus the actors' boxes.
Objects carry the material properties every sensor model reads (albedo, LiDAR reflectivity,
radar cross-section) in one table, :class:`ObjectTable`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion_core.boxes import make_boxes, wrap_angle
from sim.config import ScenarioConfig
from sim.ego import EgoModel
from sim.road import ROADSIDE_DEPTH_M, Road
from sim.traffic import CAR, CYCLIST, PEDESTRIAN, Traffic

# Object kinds (index into ObjectTable.kind).
GROUND, ROAD, SIDEWALK, MARKING, BUILDING, POLE, ACTOR = range(7)
_SURFACE_KINDS = (GROUND, ROAD, SIDEWALK, MARKING)
KIND_NAMES = ("ground", "road", "sidewalk", "marking", "building", "pole", "actor")

_CHUNK_M = 20.0

# Unit cube centred on the origin, 12 outward-facing triangles.
_CUBE_V = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
_CUBE_T = np.array([
    [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
    [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
])
_CUBE_SOUP = _CUBE_V[_CUBE_T]  # (12, 3, 3)


def box_soup(center_xyz, size_lwh) -> np.ndarray:
    """Axis-aligned box as triangle soup (12, 3, 3) in a local frame."""
    return _CUBE_SOUP * np.asarray(size_lwh) + np.asarray(center_xyz)


# Local actor shapes (triangle soup relative to the box's bottom-centre) and their GT box size.
def _car_shape(length, width, height):
    return np.concatenate([
        box_soup((0, 0, 0.3 * height), (length, width, 0.6 * height)),
        box_soup((-0.1 * length, 0, 0.8 * height), (0.5 * length, 0.9 * width, 0.4 * height)),
    ])


def _pedestrian_shape(length, width, height):
    return np.concatenate([
        box_soup((0, 0, 0.42 * height), (0.6 * length, 0.8 * width, 0.84 * height)),
        box_soup((0, 0, 0.92 * height), (0.45 * length, 0.35 * width, 0.16 * height)),
    ])


def _cyclist_shape(length, width, height):
    return np.concatenate([
        box_soup((0, 0, 0.3 * height), (length, 0.25 * width, 0.6 * height)),
        box_soup((-0.05 * length, 0, 0.78 * height), (0.3 * length, 0.8 * width, 0.44 * height)),
    ])


@dataclass
class ObjectTable:
    """Per-object properties, indexed by object id (static objects first, then actors)."""

    kind: np.ndarray           # (O,) int  kind code (GROUND..ACTOR)
    albedo_rgb: np.ndarray     # (O, 3) float  diffuse colour in [0, 1]
    reflectivity: np.ndarray   # (O,) float  LiDAR reflectivity in [0, 1]
    rcs_dbsm: np.ndarray       # (O,) float  radar cross-section
    track_id: np.ndarray       # (O,) int  actor track id, -1 for static objects
    class_id: np.ndarray       # (O,) int  actor class, -1 for static objects


@dataclass
class ActorStates:
    """World-frame actor states at one instant."""

    xyz_m: np.ndarray          # (A, 3) bottom-centre
    yaw_rad: np.ndarray        # (A,)
    velocity_mps: np.ndarray   # (A, 3) world frame


@dataclass
class SceneMesh:
    """Everything the ray caster needs for one instant."""

    triangles: np.ndarray      # (T, 3, 3) float32 world coordinates
    object_id: np.ndarray      # (T,) int32 object of each triangle
    object_velocity_mps: np.ndarray  # (O, 3) world velocity of each object (zero for static)


class World:
    """The procedural world of one scenario; deterministic for the scenario seed."""

    def __init__(self, config: ScenarioConfig):
        self.config = config
        self.road = Road(config.road)
        rng = np.random.default_rng([config.seed, 0xB0A7])
        self.crosswalks_s_m = self._place_crosswalks(rng)
        static_soups, static_props = self._static_geometry(rng)
        self.ego = EgoModel(config.ego, self.road)
        self.traffic = Traffic(config, self.road, self.ego, rng, self.crosswalks_s_m)
        self._actor_soups, self._actor_soup_valid = self._actor_local_soups()
        self._actor_albedo = self._actor_colours(rng)
        cls = self.traffic.class_id
        self._actor_rcs = np.where(cls == CAR, 10.0, np.where(cls == PEDESTRIAN, -8.0, -3.0)) + rng.normal(0.0, 2.0, len(cls))

        # Static triangles in two layers, solid objects and flat surfaces (road, sidewalk, paint),
        # each sorted by road chunk so any window of road is one contiguous slice per layer.
        soup = np.concatenate([s for s, _o, _c in static_soups]).astype(np.float32)
        obj = np.concatenate([o for _s, o, _c in static_soups]).astype(np.int32)
        chunk = np.concatenate([c for _s, _o, c in static_soups])
        flat = np.isin(np.asarray(static_props["kind"])[obj], _SURFACE_KINDS)
        n_chunks = int(np.ceil(self.road.length_m / _CHUNK_M)) + 2
        self._layers = {}
        for name, mask in (("solid", ~flat), ("surface", flat)):
            order = np.argsort(chunk[mask], kind="stable")
            starts = np.searchsorted(chunk[mask][order], np.arange(n_chunks + 1))
            self._layers[name] = (soup[mask][order], obj[mask][order], starts)
        self._n_chunks = n_chunks
        self._ground = self._ground_soup()

        n_static = len(static_props["kind"])
        a = len(self.traffic)
        self.objects = ObjectTable(
            kind=np.concatenate([static_props["kind"], np.full(a, ACTOR)]).astype(np.int32),
            albedo_rgb=np.concatenate([static_props["albedo"], self._actor_albedo]).astype(np.float32),
            reflectivity=np.concatenate([static_props["refl"], 0.15 + 0.6 * self._actor_albedo.mean(1)]).astype(np.float32),
            rcs_dbsm=np.concatenate([static_props["rcs"], self._actor_rcs]).astype(np.float32),
            track_id=np.concatenate([np.full(n_static, -1), np.arange(a)]).astype(np.int32),
            class_id=np.concatenate([np.full(n_static, -1), self.traffic.class_id]).astype(np.int32),
        )
        self.n_static_objects = n_static

    # ------------------------------------------------------------------ static geometry
    def _static_geometry(self, rng):
        """Triangle soups with object ids and road-chunk ids, plus per-object properties."""
        road, cfg = self.road, self.config
        kerb, lanes, sw = road.kerb_d_m, road.lanes_half_width_m, cfg.road.sidewalk_width_m
        props = {"kind": [GROUND], "albedo": [(0.28, 0.33, 0.2)], "refl": [0.25], "rcs": [-20.0]}
        soups = []

        def add_object(kind, albedo, refl, rcs):
            props["kind"].append(kind)
            props["albedo"].append(albedo)
            props["refl"].append(refl)
            props["rcs"].append(rcs)
            return len(props["kind"]) - 1

        def add_strip(obj_id, d_left, d_right, z=0.0, s_ranges=None):
            for s0, s1 in s_ranges or [(0.0, road.length_m)]:
                for c0 in np.arange(s0, s1, _CHUNK_M):
                    c1 = min(c0 + _CHUNK_M, s1)
                    verts, tris = road.strip(d_left, d_right, c0, c1, step_m=min(2.0, c1 - c0))
                    v3 = np.concatenate([verts, np.full((len(verts), 1), z)], 1)
                    soup = v3[tris]
                    chunk = np.full(len(soup), int((c0 + c1) / 2 // _CHUNK_M))
                    soups.append((soup, np.full(len(soup), obj_id), chunk))

        road_id = add_object(ROAD, (0.18, 0.18, 0.19), 0.1, -15.0)
        add_strip(road_id, kerb, -kerb)
        side_id = add_object(SIDEWALK, (0.5, 0.48, 0.45), 0.3, -15.0)
        add_strip(side_id, kerb + sw, kerb)
        add_strip(side_id, -kerb, -kerb - sw)
        # Lane markings: retro-reflective paint, bright in LiDAR intensity and in RGB.
        white = add_object(MARKING, (0.85, 0.85, 0.82), 0.9, -15.0)
        yellow = add_object(MARKING, (0.85, 0.7, 0.15), 0.9, -15.0)
        z_paint = 0.005
        add_strip(yellow, 0.08, -0.08, z_paint)
        bike_edge = lanes + cfg.road.bike_lane_width_m
        for edge in (lanes, bike_edge):
            add_strip(white, edge + 0.07, edge - 0.07, z_paint)
            add_strip(white, -edge + 0.07, -edge - 0.07, z_paint)
        dashes = [(s, s + 3.0) for s in np.arange(0.0, road.length_m - 3.0, 9.0)]
        for lane in range(1, cfg.road.lanes_per_direction):
            d = lane * cfg.road.lane_width_m
            add_strip(white, d + 0.07, d - 0.07, z_paint, dashes)
            add_strip(white, -d + 0.07, -d - 0.07, z_paint, dashes)
        # Zebra crossings: stripes along the road, 0.5 m wide and 0.5 m apart, kerb to kerb.
        zebra = [(s_c - 2.0, s_c + 2.0) for s_c in self.crosswalks_s_m]
        for d in np.arange(-kerb + 0.5, kerb - 0.5, 1.0):
            add_strip(white, d + 0.5, d, z_paint, zebra)

        def add_boxes_along(count_per_100m, make, kind, side, clear_of_crosswalks_m=0.0):
            n = rng.poisson(count_per_100m * road.length_m / 100.0)
            for s in np.sort(rng.uniform(0.0, road.length_m, n)):
                if clear_of_crosswalks_m and np.any(np.abs(self.crosswalks_s_m - s) < clear_of_crosswalks_m):
                    continue
                size, d, albedo, refl, rcs = make(side)
                x, y, h = road.pose(s, d)
                soup = box_soup((0, 0, size[2] / 2), size)
                c, si = np.cos(h), np.sin(h)
                rot = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1]])
                soup = soup @ rot.T + np.array([x, y, 0.0])
                obj_id = add_object(kind, albedo, refl, rcs)
                soups.append((soup, np.full(12, obj_id), np.full(12, int(s // _CHUNK_M))))

        def building(side):
            # Setback plus depth never exceed ROADSIDE_DEPTH_M (the road's geometry check uses it).
            depth = rng.uniform(8, 16)
            size = (rng.uniform(8, 25), depth, rng.uniform(5, 18))
            d = side * (kerb + sw + rng.uniform(1.0, ROADSIDE_DEPTH_M - 16.0) + depth / 2)
            tone = rng.uniform(0.35, 0.75)
            albedo = tuple(np.clip(tone * np.array([1.0, 0.95, 0.85]) + rng.normal(0, 0.05, 3), 0, 1))
            return size, d, albedo, 0.4, 25.0

        def pole(side):
            return (0.25, 0.25, rng.uniform(4, 8)), side * (kerb + 0.5), (0.45, 0.45, 0.47), 0.5, 8.0

        for side in (1, -1):
            add_boxes_along(self.config.traffic.buildings_per_100m, building, BUILDING, side)
            add_boxes_along(self.config.traffic.poles_per_100m, pole, POLE, side, clear_of_crosswalks_m=3.0)
        arrays = {k: np.asarray(v, dtype=float) for k, v in props.items()}
        return soups, arrays

    def _ground_soup(self) -> np.ndarray:
        """A large ground quad just below the road surface (object 0)."""
        x, y, _ = self.road.pose(np.linspace(0, self.road.length_m, 200))
        lo = np.array([x.min(), y.min()]) - 500.0
        hi = np.array([x.max(), y.max()]) + 500.0
        z = -0.02
        quad = np.array([[lo[0], lo[1], z], [hi[0], lo[1], z], [hi[0], hi[1], z], [lo[0], hi[1], z]])
        return quad[[[0, 1, 2], [0, 2, 3]]].astype(np.float32)

    # ------------------------------------------------------------------ actors
    def _place_crosswalks(self, rng) -> np.ndarray:
        """Arc lengths of zebra crossings, at least 30 m apart and clear of the road's ends."""
        length = self.road.length_m
        n = rng.poisson(self.config.traffic.crosswalks_per_100m * length / 100.0)
        spots = np.sort(rng.uniform(10.0, length - 10.0, n))
        kept = []
        for spot in spots:
            if not kept or spot - kept[-1] >= 30.0:
                kept.append(spot)
        return np.array(kept)

    def _actor_colours(self, rng) -> np.ndarray:
        car_palette = np.array([
            [0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.6, 0.6, 0.62],
            [0.1, 0.45, 0.2], [0.9, 0.75, 0.1], [0.35, 0.2, 0.1],
        ])
        cls = self.traffic.class_id
        colours = rng.uniform(0.1, 0.9, (len(cls), 3))
        cars = cls == CAR
        colours[cars] = car_palette[rng.integers(len(car_palette), size=int(cars.sum()))]
        colours[cls == CYCLIST] = np.clip(colours[cls == CYCLIST] * [1.0, 0.6, 0.2] + [0.0, 0.3, 0.6], 0, 1)
        return colours

    def _actor_local_soups(self):
        """Each actor's shape in its own frame, padded to a common triangle count so all actors
        transform in one einsum: soups (A, T, 3, 3) and a validity mask (A, T)."""
        shapes = {CAR: _car_shape, PEDESTRIAN: _pedestrian_shape, CYCLIST: _cyclist_shape}
        soups = [shapes[c](*size) for c, size in zip(self.traffic.class_id, self.traffic.size_lwh_m)]
        t_max = max((len(s) for s in soups), default=1)
        out = np.zeros((len(soups), t_max, 3, 3))
        valid = np.zeros((len(soups), t_max), bool)
        for i, soup in enumerate(soups):
            out[i, : len(soup)] = soup
            valid[i, : len(soup)] = True
        return out, valid

    def actor_states(self, t_s: float) -> ActorStates:
        """World poses and velocities of all actors at time t."""
        s, d, vs, vd, facing = self.traffic.frenet_state(t_s)
        x, y, heading = self.road.pose(s, d)
        tangent = np.stack([np.cos(heading), np.sin(heading)], 1)
        normal = np.stack([-np.sin(heading), np.cos(heading)], 1)
        vel_xy = tangent * vs[:, None] + normal * vd[:, None]
        moving = np.hypot(vel_xy[:, 0], vel_xy[:, 1]) > 0.05
        yaw = np.where(moving, np.arctan2(vel_xy[:, 1], vel_xy[:, 0]), heading + facing * np.pi / 2)
        xyz = np.stack([x, y, np.zeros_like(x)], 1)
        vel = np.concatenate([vel_xy, np.zeros((len(s), 1))], 1)
        return ActorStates(xyz, wrap_angle(yaw), vel)

    def ground_truth_world(self, states: ActorStates, near_xy_m: np.ndarray, radius_m: float):
        """Indices of actors within radius of a point, and their world boxes (N, BOX_DIM)."""
        dist = np.hypot(states.xyz_m[:, 0] - near_xy_m[0], states.xyz_m[:, 1] - near_xy_m[1])
        idx = np.flatnonzero(dist <= radius_m)
        size = self.traffic.size_lwh_m[idx]
        centers = states.xyz_m[idx] + np.stack([np.zeros(len(idx)), np.zeros(len(idx)), size[:, 2] / 2], 1)
        boxes = make_boxes(centers, size, states.yaw_rad[idx], states.velocity_mps[idx, :2], self.traffic.class_id[idx])
        return idx, boxes

    # ------------------------------------------------------------------ per-instant mesh
    def scene_mesh(self, t_s: float, ego_s_m: float, states: ActorStates | None = None,
                   behind_m: float = 110.0, ahead_m: float = 190.0, surfaces: bool = True) -> SceneMesh:
        """Triangle soup of everything within [ego_s - behind, ego_s + ahead] along the road
        (actors: within the larger of the two as a radius) at time t. ``surfaces=False`` leaves
        out the ground, road, sidewalks and paint (for sensors that ignore them: the radar)."""
        if states is None:
            states = self.actor_states(t_s)
        c0 = max(0, int((ego_s_m - behind_m) // _CHUNK_M))
        c1 = min(self._n_chunks - 1, int((ego_s_m + ahead_m) // _CHUNK_M))
        parts, ids = [], []
        if surfaces:
            parts.append(self._ground)
            ids.append(np.zeros(2, np.int32))
        for name in ("solid", "surface") if surfaces else ("solid",):
            layer_soup, layer_obj, starts = self._layers[name]
            parts.append(layer_soup[starts[c0]:starts[c1 + 1]])
            ids.append(layer_obj[starts[c0]:starts[c1 + 1]])

        ego_x, ego_y, _ = self.road.pose(ego_s_m, 0.0)
        near = np.flatnonzero(
            np.hypot(states.xyz_m[:, 0] - ego_x, states.xyz_m[:, 1] - ego_y) < max(behind_m, ahead_m))
        if len(near):
            local = self._actor_soups[near]  # (n, T, 3, 3), padded with degenerate triangles
            c, s = np.cos(states.yaw_rad[near]), np.sin(states.yaw_rad[near])
            # Row vectors times the transposed rotation: one batched matmul (einsum is 5x slower).
            rot_t = np.zeros((len(near), 3, 3))
            rot_t[:, 0, 0], rot_t[:, 1, 0], rot_t[:, 0, 1], rot_t[:, 1, 1], rot_t[:, 2, 2] = c, -s, s, c, 1.0
            world = np.matmul(local.reshape(len(near), -1, 3), rot_t).reshape(local.shape)
            world += states.xyz_m[near, None, None, :]
            valid = self._actor_soup_valid[near]
            parts.append(world[valid].astype(np.float32))
            ids.append(np.repeat(self.n_static_objects + near, valid.sum(1)).astype(np.int32))
        velocity = np.zeros((len(self.objects.kind), 3), np.float32)
        velocity[self.n_static_objects:] = states.velocity_mps
        return SceneMesh(np.concatenate(parts), np.concatenate(ids), velocity)
