"""Which topics of a recording feed which sensor, and how frames are synchronised.

A :class:`TopicMapping` is a frozen config loaded strictly from YAML (unknown keys, wrong types
and bad values fail with the key named). ``configs/data/sim_bag.yaml`` maps the simulator's own
bags; a real recording gets its own file. An empty topic means the sensor is not in the
recording: it is absent in every sample with reason ``not_recorded``.

Two choices matter for real recordings, which rarely carry what the simulator's bags do:

* ``untransformed_frames``: what to do with a sensor frame that the static TF tree does not
  connect to ``base_frame_id`` (many recordings have no ``/tf_static`` at all). ``error`` (the
  default) fails with ``StaticTfError``: guessing a mount silently corrupts training data.
  ``identity`` takes such a frame as mounted at ``base_frame_id`` (no offset, no rotation),
  warns once per frame and lists it in ``RosbagSource.assumed_identity_frames``, so replaying a
  bag without calibration works and says what it assumed.
* ``reference_sensor: imu``: only for recordings without any detection sensor (an IMU-only
  robot log). Samples are then paced by the IMU (one per IMU message), every detection sensor is
  absent with ``not_recorded``, and the IMU window is the only data: a replay runs to the end
  and reports what it used instead of refusing the recording. With a detection sensor mapped,
  the reference must be one of them (pacing by the IMU would repeat each scan in many samples).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusion_core.config_io import ConfigError, load_yaml, param
from fusion_core.shipped import shipped_path
from fusion_core.vocabulary import CAMERAS, DETECTION_SENSORS, SENSORS

UNTRANSFORMED_FRAME_POLICIES = ("error", "identity")


@dataclass(frozen=True)
class SyncTolerance:
    """How far (either side) a message's header stamp may be from the reference stamp.

    One value for everything (``default_s``), or per stream overrides; ``null`` = default.
    """

    default_s: float = param(0.05, "tolerance of every stream without its own value", lo=0.0, hi=10.0)
    rgb_s: float | None = param(None, "RGB images (null = default_s)", lo=0.0, hi=10.0)
    depth_s: float | None = param(None, "depth images (null = default_s)", lo=0.0, hi=10.0)
    lidar_s: float | None = param(None, "LiDAR clouds (null = default_s)", lo=0.0, hi=10.0)
    radar_s: float | None = param(None, "radar clouds (null = default_s)", lo=0.0, hi=10.0)
    ground_truth_s: float | None = param(None, "ground-truth detections and labels (null = default_s)",
                                         lo=0.0, hi=10.0)

    def for_stream(self, name: str) -> float:
        """Tolerance [s] of ``name`` (a sensor or ``ground_truth``)."""
        value = getattr(self, f"{name}_s")
        return self.default_s if value is None else value


@dataclass(frozen=True)
class TopicMapping:
    """Topics of one kind of recording; units are in the field names (``_s`` = seconds)."""

    rgb_image_topic: str = param("", "sensor_msgs/Image, rgb8 or bgr8 ('' = no RGB camera)")
    rgb_camera_info_topic: str = param("", "sensor_msgs/CameraInfo of the RGB camera (required with an image)")
    depth_image_topic: str = param("", "sensor_msgs/Image, 32FC1 metres or 16UC1 millimetres ('' = no depth camera)")
    depth_camera_info_topic: str = param("", "sensor_msgs/CameraInfo of the depth camera (required with an image)")
    lidar_topic: str = param("", "sensor_msgs/PointCloud2 of the LiDAR ('' = no LiDAR)")
    radar_topic: str = param("", "sensor_msgs/PointCloud2 of the radar ('' = no radar)")
    imu_topic: str = param("", "sensor_msgs/Imu ('' = no IMU)")
    tf_static_topic: str = param("/tf_static", "tf2_msgs/TFMessage with the sensor mounts (calibration)")
    ground_truth_topic: str = param("", "vision_msgs/Detection3DArray ground truth ('' = none)")
    labels_topic: str = param("", "diagnostic_msgs/DiagnosticArray condition/fault labels as /sim/labels ('' = none)")
    reference_sensor: str = param("lidar", "one sample per message of this sensor ('imu' only without detection sensors)",
                                  choices=SENSORS)
    sync_tolerance_s: SyncTolerance = param(SyncTolerance(), "per-stream header-stamp tolerance around the reference")
    imu_window_s: float = param(0.5, "IMU samples with stamps in (t - window, t] join a sample", lo=1e-3, hi=60.0)
    base_frame_id: str = param("base_link", "frame everything is expressed in (must be in the static TF tree)")
    lidar_intensity_field: str = param("intensity", "PointCloud2 field read as LiDAR intensity ('' = none: NaN)")
    radar_doppler_field: str = param("doppler", "PointCloud2 field read as radar radial velocity [m/s]")
    radar_rcs_field: str = param("rcs", "PointCloud2 field read as radar cross section [dBsm] ('' = none: NaN)")
    untransformed_frames: str = param("error", "sensor frame not connected to base_frame_id: 'error' (StaticTfError) "
                                      "or 'identity' (assumed at base_frame_id, warned)",
                                      choices=UNTRANSFORMED_FRAME_POLICIES)

    def __post_init__(self):
        mapped = [s for s in DETECTION_SENSORS if self.sensor_topic(s)]
        if self.reference_sensor == "imu" and mapped:
            raise ConfigError(f"reference_sensor: 'imu' is not one of the mapped detection sensors "
                              f"({', '.join(mapped)}); the IMU paces samples only in recordings without any")
        if not self.sensor_topic(self.reference_sensor):
            raise ConfigError(f"reference_sensor: {self.reference_sensor!r} has no topic "
                              f"({self.reference_sensor}_topic is empty); pick a recorded sensor")
        for cam in CAMERAS:
            if getattr(self, f"{cam}_image_topic") and not getattr(self, f"{cam}_camera_info_topic"):
                raise ConfigError(f"{cam}_camera_info_topic: required when {cam}_image_topic is set "
                                  f"(the intrinsics come from CameraInfo)")
        if not self.base_frame_id:
            raise ConfigError("base_frame_id: must not be empty")
        if not self.radar_doppler_field:
            raise ConfigError("radar_doppler_field: must not be empty (radar points carry a radial velocity)")

    def sensor_topic(self, sensor: str) -> str:
        """Data topic of ``sensor`` ('' when it is not in the recording)."""
        return getattr(self, f"{sensor}_image_topic" if sensor in CAMERAS else f"{sensor}_topic")

    def camera_info_topic(self, camera: str) -> str:
        return getattr(self, f"{camera}_camera_info_topic")

    @classmethod
    def load(cls, path: str | Path) -> TopicMapping:
        """Strictly load a mapping YAML file (errors name the file and the key)."""
        return load_yaml(cls, path)


def data_config_dir() -> Path:
    """Where the shipped mappings live: ``configs/data`` in the source tree (or the installed share folder)."""
    return shipped_path("configs/data")


def resolve_topic_mapping(name_or_path: str | Path) -> Path:
    """A mapping file from a YAML path or the name of a shipped mapping (``sim_bag``);
    ConfigError naming the shipped ones when neither exists."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"topic mapping: no such file {path}")
        return path
    shipped = data_config_dir() / f"{name_or_path}.yaml"
    if not shipped.is_file():
        names = ", ".join(sorted(p.stem for p in data_config_dir().glob("*.yaml")))
        raise ConfigError(f"topic mapping: no mapping named {str(name_or_path)!r} (shipped: {names}) "
                          "and not a YAML path")
    return shipped
