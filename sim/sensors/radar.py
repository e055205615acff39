"""Automotive radar: sparse returns with Doppler and radar cross-section.

Probe rays find what the radar can see; each visible object is detected with a probability set
by the radar equation (SNR ~ RCS / r^4, Swerling-I fluctuation) and yields a few returns,
quantised to range/azimuth bins. Doppler is the radial velocity of the target relative to the
sensor (positive = receding). Clutter and multipath ghosts add false returns. Rain and fog barely
matter at 77 GHz, which is what makes the radar the fallback when optics fail.
"""
from __future__ import annotations

import numpy as np

from sim.config import RadarConfig
from sim.sensors.context import CaptureContext
from sim.world import GROUND, MARKING, ROAD, SIDEWALK

_REFERENCE_RCS_DBSM = 10.0
# Strong targets are still seen somewhat beyond the range quoted for a 10 dBsm target.
RADAR_RANGE_FACTOR = 1.2


class RadarModel:
    def __init__(self, config: RadarConfig):
        self.config = config
        n_el, n_az = config.probe_rays
        el = np.deg2rad(np.linspace(-config.vfov_deg / 2, config.vfov_deg / 2, n_el))
        az = np.deg2rad(np.linspace(-config.hfov_deg / 2, config.hfov_deg / 2, n_az))
        e, a = np.meshgrid(el, az, indexing="ij")
        self.directions = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3).astype(np.float32)

    def sensor_velocity_world(self, ctx: CaptureContext) -> np.ndarray:
        """(3,) world velocity of the radar: ego velocity plus rotation about base_link."""
        lever = ctx.origin - np.array([ctx.ego.x_m, ctx.ego.y_m, 0.0])
        return ctx.ego.velocity_world() + np.cross([0.0, 0.0, ctx.ego.yaw_rate_radps], lever)

    def capture(self, ctx: CaptureContext) -> np.ndarray:
        """(M, 5) float32 [x, y, z, doppler, rcs] in the sensor frame."""
        c, w, rng = self.config, ctx.weather, ctx.rng
        dirs_world = ctx.to_world(self.directions)
        hits = ctx.scene.cast(ctx.origin, dirs_world)
        kind = ctx.objects.kind[np.maximum(hits.object_id, 0)]
        usable = (hits.object_id >= 0) & (hits.range_m <= c.max_range_m * RADAR_RANGE_FACTOR)
        usable &= ~np.isin(kind, (GROUND, ROAD, SIDEWALK, MARKING))
        v_sensor = self.sensor_velocity_world(ctx)
        world_from_sensor_rot = ctx.world_from_sensor[:3, :3]

        returns = []  # arrays of rows: range, azimuth, z (sensor frame), doppler, rcs
        rays = np.flatnonzero(usable)
        if len(rays):
            obj_of_ray = hits.object_id[rays]
            objs, ray_obj_index, n_rays = np.unique(obj_of_ray, return_inverse=True, return_counts=True)
            group_start = np.concatenate([[0], np.cumsum(n_rays)[:-1]])
            r_min = np.full(len(objs), np.inf, np.float32)
            np.minimum.at(r_min, ray_obj_index, hits.range_m[rays])
            rcs = ctx.objects.rcs_dbsm[objs].astype(float)
            snr = 10 ** ((rcs - _REFERENCE_RCS_DBSM) / 10) * (c.max_range_m / r_min) ** 4
            snr *= 10 ** (-w.radar_attenuation_db * (r_min / 100.0) / 10) / ctx.noise_scale
            detected = rng.random(len(objs)) < 1.0 - np.exp(-snr)  # Swerling-I detection probability
            n_ret = np.minimum(c.max_returns_per_object, np.maximum(1, n_rays // 3))
            # Pick each detected object's returns: random ray order, keep the first n per object.
            order = rays[np.lexsort((rng.random(len(rays)), obj_of_ray))]
            rank = np.arange(len(order)) - np.repeat(group_start, n_rays)
            obj_index = np.repeat(np.arange(len(objs)), n_rays)
            pick = (rank < n_ret[obj_index]) & detected[obj_index]
            chosen, chosen_obj = order[pick], obj_index[pick]
            local = dirs_world[chosen] @ world_from_sensor_rot * hits.range_m[chosen, None]
            v_rel = ctx.scene.mesh.object_velocity_mps[objs[chosen_obj]] - v_sensor
            doppler = np.einsum("ij,ij->i", dirs_world[chosen], v_rel)
            point_rcs = rcs[chosen_obj] - 10 * np.log10(n_ret[chosen_obj]) + rng.normal(0, 1.5, len(chosen))
            real = np.stack([np.linalg.norm(local, axis=1), np.arctan2(local[:, 1], local[:, 0]), local[:, 2],
                             doppler, point_rcs], 1)
            returns.append(real)
            # Multipath ghosts of actors: same bearing and Doppler, longer path, weaker.
            is_actor = ctx.objects.track_id[objs] >= 0
            ghost_obj = np.flatnonzero(detected & is_actor & (rng.random(len(objs)) < c.ghost_probability))
            if len(ghost_obj):
                # chosen_obj is sorted, so searchsorted finds each ghost's first real return.
                ghosts = real[np.searchsorted(chosen_obj, ghost_obj)].copy()
                ghosts[:, 0] += rng.uniform(2.0, 10.0, len(ghosts))
                ghosts[:, 1] += rng.normal(0, np.deg2rad(2.0), len(ghosts))
                ghosts[:, 4] -= rng.uniform(6, 12, len(ghosts))
                returns.append(ghosts)

        n_clutter = rng.poisson(c.clutter_per_scan * w.radar_clutter_mult * ctx.noise_scale)
        if n_clutter:
            az = rng.uniform(-np.deg2rad(c.hfov_deg / 2), np.deg2rad(c.hfov_deg / 2), n_clutter)
            rr = rng.uniform(2.0, 0.7 * c.max_range_m, n_clutter)
            z = rng.normal(-0.3, 0.3, n_clutter)
            u_world = np.stack([np.cos(az), np.sin(az), np.zeros(n_clutter)], 1) @ world_from_sensor_rot.T
            doppler = -(u_world @ v_sensor) + rng.normal(0, 0.3, n_clutter)
            returns.append(np.stack([rr, az, z, doppler, rng.uniform(-15, -5, n_clutter)], 1))

        if not returns:
            return np.zeros((0, 5), np.float32)
        ret = np.concatenate(returns)
        # Measurement: quantise to resolution cells, then add noise; one return per cell.
        r_q = np.round(ret[:, 0] / c.range_resolution_m) * c.range_resolution_m
        az_res = np.deg2rad(c.azimuth_resolution_deg)
        az_q = np.round(ret[:, 1] / az_res) * az_res
        cell = np.round(ret[:, 0] / c.range_resolution_m).astype(np.int64) * 100_000 + np.round(ret[:, 1] / az_res).astype(np.int64)
        _, first = np.unique(cell, return_index=True)
        ret, r_q, az_q = ret[np.sort(first)], r_q[np.sort(first)], az_q[np.sort(first)]
        k = len(ret)
        r_m = r_q + rng.normal(0, c.range_noise_m * ctx.noise_scale, k)
        az_m = az_q + rng.normal(0, np.deg2rad(c.azimuth_noise_deg) * ctx.noise_scale, k)
        z_m = ret[:, 2] + rng.normal(0, 0.15 * ctx.noise_scale, k)
        dop = ret[:, 3] + rng.normal(0, c.doppler_noise_mps * ctx.noise_scale, k)
        keep = (r_m > 0.5) & (r_m <= c.max_range_m * RADAR_RANGE_FACTOR) & (np.abs(az_m) <= np.deg2rad(c.hfov_deg / 2) + az_res)
        if ctx.occluded_fraction > 0:
            keep &= az_m > np.deg2rad(c.hfov_deg / 2) * (2 * ctx.occluded_fraction - 1)
        ground_r = np.sqrt(np.maximum(r_m**2 - z_m**2, 0.0))
        out = np.stack([ground_r * np.cos(az_m), ground_r * np.sin(az_m), z_m, dop, ret[:, 4]], 1)
        return out[keep].astype(np.float32)
