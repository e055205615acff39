"""Spinning multi-beam LiDAR.

Returns follow a lidar-equation detection test: a return is reported when
reflectivity * |cos(incidence)| * exp(-2 beta r) / r^2 exceeds the power a 10 %-reflective
target gives at the configured maximum range in clear air, times a noise floor that backscatter
raises in proportion to the extinction. Fog therefore collapses the range, and dark, grazing
surfaces (road far away) vanish first. Rain, snow and fog add spurious near
returns (drops, flakes, backscatter) with low intensity.
"""
from __future__ import annotations

import numpy as np

from sim.config import LidarConfig
from sim.sensors.context import CaptureContext

_REFERENCE_REFLECTIVITY = 0.1
_BACKSCATTER_FLOOR_M = 100.0  # noise-floor rise per unit extinction (1/m)


class LidarModel:
    def __init__(self, config: LidarConfig):
        self.config = config
        el = np.deg2rad(np.linspace(*config.elevation_range_deg, config.beams))
        # Azimuth sweeps counter-clockwise starting behind the sensor, like most spinning units.
        az = np.linspace(-np.pi, np.pi, config.azimuth_steps, endpoint=False)
        e, a = np.meshgrid(el, az, indexing="ij")  # (beams, steps)
        self.directions = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3).astype(np.float32)
        self.ring = np.repeat(np.arange(config.beams), config.azimuth_steps).astype(np.float32)
        self.azimuth = a.reshape(-1)
        self._threshold = _REFERENCE_REFLECTIVITY / config.max_range_m**2

    def capture(self, ctx: CaptureContext) -> tuple[np.ndarray, np.ndarray]:
        """Points (N, 5) [x, y, z, intensity, ring] in the sensor frame and the hit object of
        each point (N,) (-1 for spurious weather returns)."""
        c, w, rng = self.config, ctx.weather, ctx.rng
        dirs_world = ctx.to_world(self.directions)
        hits = ctx.scene.cast(ctx.origin, dirs_world)
        n_rays = len(self.directions)
        # Only rays that hit something within range need the detection test.
        cand = np.flatnonzero((hits.range_m >= c.min_range_m) & (hits.range_m <= c.max_range_m))
        r = hits.range_m[cand]
        obj = hits.object_id[cand]
        # Dot products over the contiguous arrays, then one gather (cheaper than gathering (N, 3)).
        cos_inc = np.abs(np.einsum("ij,ij->i", hits.normal, dirs_world))[cand]
        attenuation = np.exp(-2.0 * w.extinction_1pm * r)
        echo = ctx.objects.reflectivity[obj] * cos_inc * attenuation
        # Backscatter from the medium raises the receiver's noise floor (fog, heavy rain).
        noise_floor = 1.0 + _BACKSCATTER_FLOOR_M * w.extinction_1pm
        keep = echo >= self._threshold * noise_floor * r * r
        keep &= rng.random(len(cand)) >= (c.beam_dropout + w.lidar_extra_dropout)
        if ctx.occluded_fraction > 0:
            keep &= ~self._occluded(ctx.occluded_fraction)[cand]
        cand, r, obj, echo = cand[keep], r[keep], obj[keep], echo[keep]

        noise = rng.standard_normal(len(cand), dtype=np.float32) * np.float32(c.range_noise_m * ctx.noise_scale)
        if ctx.noise_scale > 1:
            # A noise burst (EMI, a failing laser) also throws some returns far off.
            wild = rng.random(len(cand)) < 0.02 * np.log10(ctx.noise_scale)
            noise[wild] = rng.uniform(-10, 10, int(wild.sum()))
        ranges = np.maximum(r + noise, c.min_range_m)
        intensity = np.minimum(255.0 * echo, 255.0)

        if w.lidar_spurious_prob > 0:
            # Drops, flakes or fog backscatter in front of the surface replace its return
            # (first-return mode); on rays that hit nothing they are the only return.
            lo, hi = w.lidar_spurious_range_m
            spur = np.flatnonzero(rng.random(n_rays) < w.lidar_spurious_prob)
            first = np.full(n_rays, np.inf)
            first[cand] = ranges
            spur = spur[first[spur] > hi]
            keep_real = ~np.isin(cand, spur)
            cand = np.concatenate([cand[keep_real], spur])
            ranges = np.concatenate([ranges[keep_real], rng.uniform(lo, hi, len(spur))])
            intensity = np.concatenate([intensity[keep_real], rng.uniform(1.0, 15.0, len(spur))])
            obj = np.concatenate([obj[keep_real], np.full(len(spur), -1, np.int32)])

        out = np.empty((len(cand), 5), np.float32)
        np.multiply(self.directions[cand], ranges[:, None], out=out[:, :3])
        out[:, 3] = intensity
        out[:, 4] = self.ring[cand]
        return out, obj

    def _occluded(self, fraction: float) -> np.ndarray:
        """Rays blocked by dirt on the window: a forward-facing azimuth sector."""
        half = np.pi * fraction
        return np.abs(self.azimuth - 0.3) < half
