"""RGB camera: shaded from ray hits.

Radiance = albedo x (ambient + Lambert sun) by day, headlight cone only by night; atmospheric
scattering blends towards the fog colour with transmittance exp(-beta r) (Koschmieder); rain and
snow veil the contrast and draw streaks or flakes; a low sun adds a bloom and washes the image
out. Auto-exposure has a gain ceiling, so night images stay dark and become noisy.
"""
from __future__ import annotations

import numpy as np

from fusion_core.data.intrinsics import PinholeIntrinsics
from sim.config import RgbCameraConfig
from sim.sensors.camera import occlusion_mask
from sim.sensors.context import CaptureContext
from sim.world import GROUND, ROAD, SIDEWALK

_MAX_GAIN = 4.0
_TARGET_MEAN = 0.4
_SKY_DAY = np.array([0.55, 0.7, 0.95])
_SKY_NIGHT = np.array([0.01, 0.012, 0.03])
_GAMMA_LUT = (np.linspace(0.0, 1.0, 4096) ** (1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


class RgbCameraModel:
    def __init__(self, config: RgbCameraConfig):
        self.config = config
        self.intrinsics = PinholeIntrinsics.from_fov(config.width_px, config.height_px, config.hfov_deg)
        self.rays = self.intrinsics.pixel_rays()

    def _sun_direction_world(self, ctx: CaptureContext) -> np.ndarray:
        """Unit vector towards the sun: high in the south-west, or low ahead for glare."""
        if ctx.weather.sun_glare > 0:
            az, el = ctx.ego.yaw_rad + 0.15, np.deg2rad(6.0)
        else:
            az, el = np.deg2rad(210.0), np.deg2rad(50.0)
        return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])

    def capture(self, ctx: CaptureContext) -> np.ndarray:
        """(H, W, 3) uint8 image."""
        c, w, rng = self.config, ctx.weather, ctx.rng
        h_px, w_px = c.height_px, c.width_px
        dirs_world = ctx.to_world(self.rays)
        hits = ctx.scene.cast(ctx.origin, dirs_world)
        hit = hits.object_id >= 0
        obj = np.maximum(hits.object_id, 0)
        albedo = ctx.objects.albedo_rgb[obj]
        if w.ground_whitening > 0:
            kind = ctx.objects.kind[obj]
            flat = (kind == GROUND) | (kind == ROAD) | (kind == SIDEWALK)
            albedo[flat] = albedo[flat] * (1 - w.ground_whitening) + 0.85 * w.ground_whitening

        # |n . ray| is the same whichever way the stored normal faces.
        night = w.condition == "night"
        sun = self._sun_direction_world(ctx)
        if night:
            irradiance = w.ambient_light + self._headlights(ctx, dirs_world, hits.normal, hits.range_m)
        else:
            facing = np.sign(np.einsum("ij,ij->i", hits.normal, dirs_world))
            lambert = np.clip(-(hits.normal @ sun) * facing, 0.0, None)
            irradiance = w.ambient_light * (0.35 + 0.75 * lambert)
        radiance = albedo * irradiance.astype(np.float32)[:, None]

        air = np.float32(w.fog_colour * (1.0 if night else w.ambient_light))
        if w.visibility_m > 2000:
            background = (_SKY_NIGHT if night else _SKY_DAY * w.ambient_light).astype(np.float32)
        else:
            background = np.full(3, air, np.float32)
        transmittance = np.exp(-w.extinction_1pm * np.where(hit, hits.range_m, 0.0)).astype(np.float32)[:, None]
        radiance = np.where(hit[:, None], radiance * transmittance + air * (1 - transmittance), background)
        img = radiance.reshape(h_px, w_px, 3)

        if w.rgb_contrast < 1.0:
            mean = img.mean()
            img = mean + (img - mean) * np.float32(w.rgb_contrast)
        if w.sun_glare > 0:
            img = self._glare(img, ctx, sun, w.sun_glare)
        if w.rgb_streaks:
            self._draw_streaks(img, rng, w.rgb_streaks)
        if w.rgb_flakes:
            self._draw_flakes(img, rng, w.rgb_flakes)
        if ctx.occluded_fraction > 0:
            img[occlusion_mask(self.intrinsics, ctx.occluded_fraction)] = 0.002  # mud: almost no light

        gain = c.exposure * float(np.clip(_TARGET_MEAN / max(float(img.mean()), 1e-4), 0.3, _MAX_GAIN))
        # Shot + read noise, applied in linear space after the exposure gain.
        img = img * np.float32(gain)
        noise = rng.standard_normal(img.shape, dtype=np.float32)
        img += noise * np.float32(c.noise_std * ctx.noise_scale * gain) * np.sqrt(np.clip(img, 0.02, 4.0) + 0.05)
        # Gamma through a 4096-entry lookup table (pow on every pixel is the slow part).
        codes = np.clip(img * 4095.0, 0, 4095).astype(np.int16)
        return _GAMMA_LUT[codes]

    def _headlights(self, ctx, dirs_world, normal, range_m) -> np.ndarray:
        """Irradiance from the ego's low beams: a cone along the heading, inverse-square fall-off."""
        fwd = np.array([np.cos(ctx.ego.yaw_rad), np.sin(ctx.ego.yaw_rad), 0.0])
        left = np.array([-fwd[1], fwd[0], 0.0])
        az = np.arctan2(dirs_world @ left, dirs_world @ fwd)
        el = np.arcsin(np.clip(dirs_world[:, 2], -1, 1))
        cone = np.exp(-((az / 0.45) ** 2) - ((el + 0.04) / 0.12) ** 2)
        r = np.where(np.isfinite(range_m), range_m, 1e3)
        lambert = np.abs(np.einsum("ij,ij->i", normal, dirs_world))
        return 2.0 * cone * lambert / (1.0 + (r / 12.0) ** 2)

    def _glare(self, img, ctx, sun_world, strength) -> np.ndarray:
        """Bloom around the sun's image position and a global veil."""
        sun_optical = ctx.world_from_sensor[:3, :3].T @ sun_world
        k = self.intrinsics
        h_px, w_px = img.shape[:2]
        if sun_optical[2] > 0:
            u = k.fx * sun_optical[0] / sun_optical[2] + k.cx
            v = k.fy * sun_optical[1] / sun_optical[2] + k.cy
        else:
            u, v = w_px / 2, -h_px
        sigma2 = (0.3 * w_px) ** 2
        # The Gaussian bloom separates into a column and a row profile.
        bloom = np.outer(np.exp(-((np.arange(h_px) - v) ** 2) / sigma2), np.exp(-((np.arange(w_px) - u) ** 2) / sigma2))
        veil = 0.6 * strength
        return (img * (1 - veil) + veil + (3.0 * strength * bloom)[..., None]).astype(np.float32)

    @staticmethod
    def _draw_streaks(img, rng, count):
        h_px, w_px = img.shape[:2]
        length = rng.integers(5, 16, count)
        r0, c0 = rng.integers(0, h_px, count), rng.integers(0, w_px, count)
        steps = np.arange(16)
        rows = r0[:, None] + steps[None, :]
        cols = c0[:, None] + (steps[None, :] * 0.25).astype(int)
        on = (steps[None, :] < length[:, None]) & (rows < h_px) & (cols < w_px)
        img[rows[on], cols[on]] = img[rows[on], cols[on]] * 0.5 + 0.35

    @staticmethod
    def _draw_flakes(img, rng, count):
        h_px, w_px = img.shape[:2]
        rows, cols = rng.integers(0, h_px - 1, count), rng.integers(0, w_px - 1, count)
        for dr in (0, 1):
            for dc in (0, 1):
                img[rows + dr, cols + dc] = 0.9
