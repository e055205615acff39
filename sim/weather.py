"""Ambient conditions turned into per-sensor physical parameters.

One function, :func:`weather_effects`, maps (condition, severity) to the numbers every sensor
model reads. The mapping follows the complementarity table of DESIGN.md: fog collapses optical
range (LiDAR, depth, RGB contrast) but barely touches the radar; night darkens only the passive
camera; glare washes out the RGB and blinds the active-IR depth camera, and so on.
"""
from __future__ import annotations

from dataclasses import dataclass

from sim.config import WeatherConfig

_KOSCHMIEDER = 3.912  # extinction coefficient x meteorological visibility (5 % contrast)


@dataclass(frozen=True)
class WeatherEffects:
    condition: str
    severity: float
    visibility_m: float            # meteorological visibility (optical)
    ambient_light: float           # scene illumination relative to an overcast day (1.0)
    sun_glare: float               # 0..1 strength of a low sun in the camera's view
    fog_colour: float              # grey level the air scatters towards (RGB)
    rgb_contrast: float            # multiplicative contrast left after rain/snow veiling
    rgb_streaks: int               # rain streaks drawn per image
    rgb_flakes: int                # snow flakes drawn per image
    ground_whitening: float        # 0..1 snow cover on ground albedo
    lidar_spurious_prob: float     # per-ray chance of a return from drops / flakes / backscatter
    lidar_spurious_range_m: tuple[float, float]
    lidar_extra_dropout: float     # per-return loss added by the medium
    depth_noise_mult: float        # multiplier on the depth camera's range noise
    depth_invalid_prob: float      # per-pixel chance of no depth
    depth_range_factor: float      # fraction of the configured max range still measurable
    radar_clutter_mult: float      # multiplier on clutter returns
    radar_attenuation_db: float    # two-way loss at 100 m

    @property
    def extinction_1pm(self) -> float:
        """Optical extinction coefficient beta (1/m) for visible and 905 nm light."""
        return _KOSCHMIEDER / self.visibility_m


def weather_effects(config: WeatherConfig) -> WeatherEffects:
    """Per-sensor parameters for a condition at a severity in [0, 1]."""
    s = config.severity
    base = dict(
        condition=config.condition, severity=s, visibility_m=8000.0, ambient_light=1.0, sun_glare=0.0,
        fog_colour=0.75, rgb_contrast=1.0, rgb_streaks=0, rgb_flakes=0, ground_whitening=0.0,
        lidar_spurious_prob=0.0, lidar_spurious_range_m=(1.0, 5.0), lidar_extra_dropout=0.0,
        depth_noise_mult=1.0, depth_invalid_prob=0.0, depth_range_factor=1.0,
        radar_clutter_mult=1.0, radar_attenuation_db=0.0,
    )
    c = config.condition
    if c == "night":
        base.update(ambient_light=0.06 - 0.05 * s, fog_colour=0.02)
    elif c == "rain":
        base.update(
            visibility_m=1500.0 * (1 - s) + 150.0, fog_colour=0.55, rgb_contrast=1.0 - 0.35 * s,
            rgb_streaks=int(40 + 260 * s), ambient_light=0.75 - 0.25 * s,
            lidar_spurious_prob=0.01 * s, lidar_spurious_range_m=(1.0, 8.0), lidar_extra_dropout=0.08 * s,
            depth_noise_mult=1.0 + 3.0 * s, depth_invalid_prob=0.08 * s,
            radar_clutter_mult=1.0 + 0.6 * s, radar_attenuation_db=1.0 * s,
        )
    elif c == "fog":
        base.update(
            visibility_m=300.0 * (1 - s) ** 1.5 + 18.0, fog_colour=0.78, ambient_light=0.8,
            lidar_spurious_prob=0.04 * s, lidar_spurious_range_m=(1.0, 6.0),
            depth_range_factor=max(0.15, 1.0 - 0.85 * s), depth_noise_mult=1.0 + 1.5 * s,
            depth_invalid_prob=0.35 * s,  # scattered pattern light: pixels fail, not only far ones
            radar_attenuation_db=0.2 * s,
        )
    elif c == "snow":
        base.update(
            visibility_m=1000.0 * (1 - s) + 60.0, fog_colour=0.85, rgb_contrast=1.0 - 0.4 * s,
            rgb_flakes=int(100 + 600 * s), ground_whitening=0.7 * s, ambient_light=0.9,
            lidar_spurious_prob=0.03 * s, lidar_spurious_range_m=(1.0, 25.0), lidar_extra_dropout=0.12 * s,
            depth_noise_mult=1.0 + 4.0 * s, depth_invalid_prob=0.25 * s, depth_range_factor=1.0 - 0.4 * s,
            radar_clutter_mult=1.0 + 0.4 * s, radar_attenuation_db=0.8 * s,
        )
    elif c == "glare":
        base.update(sun_glare=0.55 + 0.45 * s, ambient_light=1.3, depth_invalid_prob=0.6 + 0.38 * s)
    return WeatherEffects(**base)
