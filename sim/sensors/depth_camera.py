"""Active (structured light / time-of-flight) depth camera.

Depth is z along the optical axis in metres, NaN where nothing was measured (REP 118). Noise
grows with the square of range; the usable range is limited; strong sunlight (glare) swamps the
projected pattern so most pixels fail; fog and snow shorten the range and add noise.
"""
from __future__ import annotations

import numpy as np

from fusion_core.data.intrinsics import PinholeIntrinsics
from sim.config import DepthCameraConfig
from sim.sensors.camera import occlusion_mask
from sim.sensors.context import CaptureContext


class DepthCameraModel:
    def __init__(self, config: DepthCameraConfig):
        self.config = config
        self.intrinsics = PinholeIntrinsics.from_fov(config.width_px, config.height_px, config.hfov_deg)
        self.rays = self.intrinsics.pixel_rays()

    def capture(self, ctx: CaptureContext) -> np.ndarray:
        """(H, W) float32 depth in metres, NaN where invalid."""
        c, w, rng = self.config, ctx.weather, ctx.rng
        dirs_world = ctx.to_world(self.rays)
        hits = ctx.scene.cast(ctx.origin, dirs_world)
        z = hits.range_m * self.rays[:, 2]
        cos_inc = np.abs(np.einsum("ij,ij->i", hits.normal, dirs_world))
        max_range = c.max_range_m * w.depth_range_factor
        sigma = c.noise_per_m2 * w.depth_noise_mult * ctx.noise_scale * np.where(np.isfinite(z), z, 0.0) ** 2
        if w.sun_glare > 0:
            sigma = sigma * 3.0
        z_noisy = z + rng.normal(0.0, 1.0, len(z)) * sigma
        valid = np.isfinite(z) & (z >= c.min_range_m) & (z <= max_range) & (cos_inc > 0.12)
        valid &= rng.random(len(z)) >= w.depth_invalid_prob
        depth = np.where(valid, z_noisy, np.nan).astype(np.float32).reshape(c.height_px, c.width_px)
        if w.rgb_flakes:
            # Snow flakes in front of the camera return short, wrong depths.
            n = w.rgb_flakes // 8
            rows, cols = rng.integers(c.height_px, size=n), rng.integers(c.width_px, size=n)
            depth[rows, cols] = rng.uniform(c.min_range_m, 4.0, n)
        if ctx.occluded_fraction > 0:
            depth[occlusion_mask(self.intrinsics, ctx.occluded_fraction)] = np.nan
        return depth
