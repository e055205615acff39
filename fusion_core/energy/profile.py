"""Device profiles (``configs/energy/*.yaml``): what compute and sensors cost in joules.

The model behind per-component attribution: a component's compute energy is its FLOPs times the
device's ``compute_j_per_gflop``; a sensor that is on draws its constant ``power_w`` for the whole
frame period. ``compute_idle_power_w`` is what the compute device draws while the stack runs but
computes nothing: it is reported next to the ledger, never attributed to a component, because no
component's choice (running or skipping) changes it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from fusion_core.config_io import ConfigError, load_yaml, param
from fusion_core.shipped import shipped_path
from fusion_core.vocabulary import SENSORS


@dataclass(frozen=True)
class SensorPower:
    """Electrical power each sensor draws while it is on, in watts."""

    rgb_w: float = param(2.5, "RGB camera", lo=0.0, hi=1000.0)
    depth_w: float = param(2.5, "depth camera", lo=0.0, hi=1000.0)
    lidar_w: float = param(8.0, "LiDAR", lo=0.0, hi=1000.0)
    radar_w: float = param(6.6, "radar", lo=0.0, hi=1000.0)
    imu_w: float = param(0.4, "IMU", lo=0.0, hi=1000.0)

    def __post_init__(self):
        # one field per sensor of the vocabulary, in its order (a new sensor needs its power here)
        if self.sensor_names() != SENSORS:
            raise ConfigError(f"SensorPower fields {self.sensor_names()} do not match the sensors {SENSORS}")

    @classmethod
    def sensor_names(cls) -> tuple[str, ...]:
        """The sensors a profile knows: fusion_core.vocabulary.SENSORS."""
        return tuple(f.name.removesuffix("_w") for f in dataclasses.fields(cls))

    def power_w(self, sensor: str) -> float:
        """Power draw of ``sensor`` (a name from :meth:`sensor_names`); ValueError names an unknown one."""
        if sensor not in self.sensor_names():
            raise ValueError(f"unknown sensor {sensor!r} (known sensors: {', '.join(self.sensor_names())})")
        return getattr(self, f"{sensor}_w")


@dataclass(frozen=True)
class DeviceProfile:
    """A compute device and its sensor suite, as energy costs."""

    name: str = param("desktop_cpu", "short name (file stem of the shipped profile)")
    description: str = param("", "what hardware this profile stands for and where its numbers come from")
    compute_j_per_gflop: float = param(0.35, "energy of 1e9 FLOPs of model compute on this device, J",
                                       lo=1e-6, hi=100.0)
    compute_idle_power_w: float = param(15.0, "compute device draw while the stack runs but is not computing, W "
                                        "(reported, not attributed to components)", lo=0.0, hi=10000.0)
    # SensorPower is frozen, so every profile sharing the default instance is safe.
    sensor_power: SensorPower = param(SensorPower(), "power draw of each sensor while it is on")


def energy_profile_dir() -> Path:
    """Where the shipped profiles live: ``configs/energy`` in the source tree (or the installed share folder)."""
    return shipped_path("configs/energy")


def load_device_profile(name_or_path: str | Path) -> DeviceProfile:
    """A device profile from a YAML path or a shipped profile name such as ``jetson_orin``.

    Errors (:class:`ConfigError`) name the file and key, or for an unknown name the folder that
    was searched and the profiles found there.
    """
    path = Path(name_or_path)
    if path.is_file():
        return load_yaml(DeviceProfile, path)
    folder = energy_profile_dir()
    candidate = folder / f"{path.stem}.yaml"
    if path.parent == Path(".") and path.suffix in ("", ".yaml") and candidate.is_file():
        return load_yaml(DeviceProfile, candidate)
    if not folder.is_dir():
        raise ConfigError(f"{name_or_path}: no such device profile file, and the shipped profiles folder "
                          f"{folder} does not exist (is dyn_fusion installed without its configs?)")
    known = sorted(p.stem for p in folder.glob("*.yaml"))
    raise ConfigError(f"{name_or_path}: no such device profile file, nor a shipped profile in {folder} "
                      f"(shipped profiles: {', '.join(known) or 'none'})")
