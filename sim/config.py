"""Scenario configuration: the frozen dataclasses a `configs/scenarios/*.yaml` file maps onto.

Units are in field names. Every field has a one-line doc and a valid range; loading is strict
(see fusion_core.config_io).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_core.config_io import ConfigError, load_yaml, param
from fusion_core.shipped import shipped_path
from fusion_core.vocabulary import CONDITIONS, SENSORS

FAULT_KINDS: tuple[str, ...] = ("dropout", "frozen", "noise_burst", "occlusion", "calibration_drift", "latency")


@dataclass(frozen=True)
class MountConfig:
    """Sensor pose on the vehicle: base_link (ground level below the rear axle) to sensor body."""

    xyz_m: tuple[float, float, float] = param((0.0, 0.0, 0.0), "sensor position in base_link", lo=-10, hi=10)
    rpy_deg: tuple[float, float, float] = param((0.0, 0.0, 0.0), "roll, pitch, yaw of the sensor body", lo=-180, hi=180)


@dataclass(frozen=True)
class RoadSegmentConfig:
    length_m: float = param(100.0, "length of this stretch of road centreline", lo=1.0, hi=5000.0)
    curvature_1pm: float = param(0.0, "signed curvature (1/radius, positive = left turn)", lo=-0.2, hi=0.2)


@dataclass(frozen=True)
class RoadConfig:
    segments: tuple[RoadSegmentConfig, ...] = param(
        (RoadSegmentConfig(length_m=1000.0),), "centreline as consecutive constant-curvature stretches")
    lane_width_m: float = param(3.5, "width of one lane", lo=2.0, hi=5.0)
    lanes_per_direction: int = param(2, "lanes in each direction", lo=1, hi=4)
    bike_lane_width_m: float = param(1.6, "bike lane beside the outer lane, each side", lo=1.0, hi=4.0)
    parking_width_m: float = param(2.4, "parking strip between the bike lane and the kerb, each side", lo=2.2, hi=4.0)
    sidewalk_width_m: float = param(3.5, "sidewalk width on each side of the road", lo=2.0, hi=10.0)

    def __post_init__(self):
        if not self.segments:
            raise ConfigError("road.segments: at least one segment is needed")


@dataclass(frozen=True)
class TrafficConfig:
    cars_per_100m: float = param(4.0, "moving cars per 100 m of road (both directions)", lo=0.0, hi=40.0)
    parked_cars_per_100m: float = param(2.5, "parked cars at the kerb per 100 m", lo=0.0, hi=20.0)
    pedestrians_per_100m: float = param(5.0, "pedestrians per 100 m on the sidewalks (standing or walking)", lo=0.0, hi=50.0)
    cyclists_per_100m: float = param(2.0, "cyclists per 100 m (kerb lane)", lo=0.0, hi=20.0)
    buildings_per_100m: float = param(3.0, "buildings per 100 m on each side", lo=0.0, hi=20.0)
    poles_per_100m: float = param(4.0, "poles (lamps, signs) per 100 m on each side", lo=0.0, hi=40.0)
    crosswalks_per_100m: float = param(0.8, "zebra crossings per 100 m, each with one or two crossing pedestrians", lo=0.0, hi=10.0)


@dataclass(frozen=True)
class EgoConfig:
    start_s_m: float = param(30.0, "arc length along the road where the ego starts", lo=0.0, hi=10000.0)
    lane_index: int = param(0, "ego lane counted from the centre line (0 = innermost)", lo=0, hi=3)
    speed_mps: float = param(10.0, "initial speed", lo=0.0, hi=40.0)
    acceleration_mps2: float = param(0.0, "constant longitudinal acceleration (speed is floored at 0)", lo=-5.0, hi=5.0)
    road_roughness: float = param(0.3, "road roughness driving IMU vibration (0 = glass, 1 = cobbles)", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class LidarConfig:
    rate_hz: float = param(10.0, "scan rate", lo=1.0, hi=40.0)
    phase_s: float = param(0.0, "capture-time offset from the frame clock", lo=0.0, hi=1.0)
    beams: int = param(32, "number of laser beams (rings)", lo=4, hi=128)
    azimuth_steps: int = param(1024, "firings per revolution", lo=64, hi=4096)
    elevation_range_deg: tuple[float, float] = param((-25.0, 15.0), "lowest and highest beam elevation", lo=-60, hi=60)
    min_range_m: float = param(1.0, "returns closer than this are discarded", lo=0.0, hi=10.0)
    max_range_m: float = param(100.0, "maximum range in clear air for a bright target", lo=5.0, hi=300.0)
    range_noise_m: float = param(0.02, "1-sigma range noise", lo=0.0, hi=1.0)
    beam_dropout: float = param(0.01, "probability that a single return is lost", lo=0.0, hi=1.0)
    mount: MountConfig = param(MountConfig(xyz_m=(1.2, 0.0, 1.9)), "pose on the vehicle")


@dataclass(frozen=True)
class DepthCameraConfig:
    rate_hz: float = param(10.0, "frame rate", lo=1.0, hi=60.0)
    phase_s: float = param(0.0, "capture-time offset from the frame clock", lo=0.0, hi=1.0)
    width_px: int = param(112, "image width", lo=16, hi=1280)
    height_px: int = param(64, "image height", lo=16, hi=960)
    hfov_deg: float = param(80.0, "horizontal field of view", lo=10.0, hi=150.0)
    min_range_m: float = param(0.3, "closest measurable depth", lo=0.0, hi=5.0)
    max_range_m: float = param(30.0, "farthest measurable depth", lo=1.0, hi=100.0)
    noise_per_m2: float = param(0.002, "1-sigma depth noise per metre squared of range (structured-light/ToF law)", lo=0.0, hi=0.1)
    mount: MountConfig = param(MountConfig(xyz_m=(1.6, 0.05, 1.5)), "pose on the vehicle")


@dataclass(frozen=True)
class RgbCameraConfig:
    rate_hz: float = param(10.0, "frame rate", lo=1.0, hi=60.0)
    phase_s: float = param(0.0, "capture-time offset from the frame clock", lo=0.0, hi=1.0)
    width_px: int = param(192, "image width", lo=16, hi=1920)
    height_px: int = param(112, "image height", lo=16, hi=1080)
    hfov_deg: float = param(80.0, "horizontal field of view", lo=10.0, hi=150.0)
    exposure: float = param(1.0, "exposure gain applied before tone mapping", lo=0.05, hi=20.0)
    noise_std: float = param(0.01, "1-sigma sensor noise (fraction of full scale) at unit gain", lo=0.0, hi=0.5)
    mount: MountConfig = param(MountConfig(xyz_m=(1.6, -0.05, 1.5)), "pose on the vehicle")


@dataclass(frozen=True)
class RadarConfig:
    rate_hz: float = param(20.0, "scan rate", lo=1.0, hi=50.0)
    phase_s: float = param(0.0, "capture-time offset from the frame clock", lo=0.0, hi=1.0)
    hfov_deg: float = param(100.0, "horizontal field of view", lo=10.0, hi=180.0)
    vfov_deg: float = param(12.0, "vertical field of view", lo=1.0, hi=40.0)
    max_range_m: float = param(150.0, "maximum range for a 10 dBsm target", lo=10.0, hi=300.0)
    probe_rays: tuple[int, int] = param((4, 150), "elevation x azimuth probe rays cast per scan", lo=1, hi=2048)
    range_resolution_m: float = param(0.4, "range bin size", lo=0.05, hi=5.0)
    azimuth_resolution_deg: float = param(1.5, "azimuth bin size", lo=0.1, hi=10.0)
    range_noise_m: float = param(0.1, "1-sigma range noise", lo=0.0, hi=2.0)
    azimuth_noise_deg: float = param(0.3, "1-sigma azimuth noise", lo=0.0, hi=5.0)
    doppler_noise_mps: float = param(0.1, "1-sigma radial-velocity noise", lo=0.0, hi=5.0)
    max_returns_per_object: int = param(4, "most returns one object yields per scan", lo=1, hi=64)
    clutter_per_scan: float = param(4.0, "mean false returns per scan (ground and multipath clutter)", lo=0.0, hi=100.0)
    ghost_probability: float = param(0.1, "chance a real target spawns a multipath ghost", lo=0.0, hi=1.0)
    mount: MountConfig = param(MountConfig(xyz_m=(3.8, 0.0, 0.6)), "pose on the vehicle")


@dataclass(frozen=True)
class ImuConfig:
    rate_hz: float = param(200.0, "sample rate (>= 100 Hz)", lo=100.0, hi=2000.0)
    accel_noise_mps2: float = param(0.02, "1-sigma white accelerometer noise per sample", lo=0.0, hi=2.0)
    gyro_noise_radps: float = param(0.002, "1-sigma white gyro noise per sample", lo=0.0, hi=0.5)
    accel_bias_walk_mps2: float = param(0.0005, "accelerometer bias random-walk step per sample", lo=0.0, hi=0.1)
    gyro_bias_walk_radps: float = param(0.00002, "gyro bias random-walk step per sample", lo=0.0, hi=0.01)
    vibration_mps2_per_mps: float = param(0.02, "vertical vibration amplitude per m/s of speed at roughness 1", lo=0.0, hi=1.0)
    mount: MountConfig = param(MountConfig(xyz_m=(1.0, 0.0, 0.5)), "pose on the vehicle")


@dataclass(frozen=True)
class SensorSuiteConfig:
    rgb: RgbCameraConfig = param(RgbCameraConfig(), "RGB camera")
    depth: DepthCameraConfig = param(DepthCameraConfig(), "depth camera")
    lidar: LidarConfig = param(LidarConfig(), "spinning LiDAR")
    radar: RadarConfig = param(RadarConfig(), "automotive radar")
    imu: ImuConfig = param(ImuConfig(), "IMU")


@dataclass(frozen=True)
class WeatherConfig:
    condition: str = param("clear", "ambient condition", choices=CONDITIONS)
    severity: float = param(0.6, "strength of the condition (0 = barely, 1 = worst)", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class FaultConfig:
    """One fault on one sensor over [start_s, end_s) of simulated time."""

    sensor: str = param("lidar", "sensor the fault hits", choices=SENSORS)
    kind: str = param("dropout", "fault type", choices=FAULT_KINDS)
    start_s: float = param(0.0, "fault onset, seconds from the start of the run", lo=0.0, hi=1e6)
    end_s: float = param(1.0, "fault end (exclusive)", lo=0.0, hi=1e6)
    noise_scale: float = param(10.0, "noise_burst: multiplier on the sensor's noise", lo=1.0, hi=1000.0)
    occluded_fraction: float = param(0.4, "occlusion: fraction of the field of view blocked", lo=0.0, hi=1.0)
    drift_deg_per_s: float = param(0.5, "calibration_drift: yaw/pitch drift rate of the mount", lo=-20.0, hi=20.0)
    latency_ms: float = param(80.0, "latency: added mean delivery delay", lo=0.0, hi=5000.0)
    jitter_ms: float = param(20.0, "latency: 1-sigma delay jitter", lo=0.0, hi=1000.0)

    def __post_init__(self):
        if self.end_s <= self.start_s:
            raise ConfigError(f"faults: end_s ({self.end_s}) must be after start_s ({self.start_s})")


@dataclass(frozen=True)
class ScenarioConfig:
    name: str = param("default", "scenario name used in file names and labels")
    description: str = param("", "one line for humans")
    seed: int = param(0, "master seed; the whole run is a deterministic function of it", lo=0, hi=2**31 - 1)
    frame_rate_hz: float = param(10.0, "frame clock: one frame (ground truth + training sample) per tick", lo=1.0, hi=50.0)
    frames: int = param(100, "default number of frames when the CLI gives none", lo=1, hi=1_000_000)
    road: RoadConfig = param(RoadConfig(), "road layout")
    traffic: TrafficConfig = param(TrafficConfig(), "actor and static-object densities")
    ego: EgoConfig = param(EgoConfig(), "ego vehicle motion")
    sensors: SensorSuiteConfig = param(SensorSuiteConfig(), "the five sensors")
    weather: WeatherConfig = param(WeatherConfig(), "ambient condition")
    faults: tuple[FaultConfig, ...] = param((), "scheduled sensor faults")
    detection_range_m: float = param(60.0, "ground truth keeps actors within this distance of the ego", lo=5.0, hi=300.0)


def load_scenario(path: str | Path) -> ScenarioConfig:
    """Load a scenario YAML file (errors name the file and the offending key)."""
    return load_yaml(ScenarioConfig, path)


def scenario_dir() -> Path:
    """Where the shipped scenarios live: the source tree, or an installed ament share folder."""
    return shipped_path("configs/scenarios")


def resolve_scenario(name_or_path: str | Path) -> Path:
    """A scenario path from a file path or a shipped scenario name such as ``fog``."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = scenario_dir() / f"{path.stem}.yaml"
    if path.parent == Path(".") and candidate.is_file():
        return candidate
    known = sorted(p.stem for p in scenario_dir().glob("*.yaml"))
    raise ConfigError(f"{name_or_path}: no such scenario file (shipped scenarios: {', '.join(known)})")
