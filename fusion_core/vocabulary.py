"""The project's vocabulary, defined once: sensors (and what each one is), weather conditions,
why a sensor can be absent from a frame, and the names of the energy ledger's components.

Everything else (the model, data sources, the simulator, the nodes, the CLI) imports these names
instead of spelling them out, so a new modality or a second camera is mostly one ``SensorSpec``
entry here plus its stem, decoder and simulator model. Plain strings and tuples only: this module
imports nothing, so every layer may use it.
"""
from __future__ import annotations

from dataclasses import dataclass

# ----------------------------------------------------------------------------- absence reasons
# Why a sensor has no data in a frame (``FusionSample.absence`` values). A sensor that is absent is
# absent with one of these, never zeros pretending to be data.
DROPPED_BY_FAULT = "dropped_by_fault"        # the simulator's dropout fault, or a bag's dropped message
NO_CAPTURE = "no_capture"                    # the sensor had no capture at this frame time (its rate)
NOT_RECORDED = "not_recorded"                # the recording or mapping has no topic for it
NO_MESSAGE = "no_message"                    # mapped, but no message near the frame's stamp
NO_CAMERA_INFO = "no_camera_info"            # an image without the CameraInfo needed to use it
NO_CALIBRATION = "no_calibration"            # no mount (static TF) for the sensor's frame
DECODE_ERROR = "decode_error"                # the message could not be decoded (counted as a drop)
NOT_SUBSCRIBED = "not_subscribed"            # the node does not subscribe to it (not in its roles)
STANDBY = "standby"                          # powered down by sensor power gating
WARMING = "warming"                          # powered up, but its data is not valid yet
TRAINING_DROPOUT = "training_dropout"        # removed by training-time modality dropout
EVALUATION_DROPOUT = "evaluation:dropout"    # removed for an evaluation dropout row
EVALUATION_NOT_SELECTED = "evaluation:not_selected"  # removed by ``evaluate --sensors``
# Drop causes of messages whose stamps break their stream's order (the live synchroniser's and
# the bag reader's alike, so evaluate and replay count the same messages).
DUPLICATE_STAMP = "duplicate_stamp"          # the stamp of a message already taken from the stream
OUT_OF_ORDER = "out_of_order"                # older than a message already taken from the stream
NO_RETURNS = "no_returns"                    # a LiDAR cloud or depth image without one valid measurement
SYNC_PREFIX = "sync:"                        # the synchroniser found no partner: "sync:missing", "sync:timeout"

ABSENCE_REASONS: tuple[str, ...] = (
    DROPPED_BY_FAULT, NO_CAPTURE, NOT_RECORDED, NO_MESSAGE, NO_CAMERA_INFO, NO_CALIBRATION, DECODE_ERROR,
    NOT_SUBSCRIBED, STANDBY, WARMING, TRAINING_DROPOUT, EVALUATION_DROPOUT, EVALUATION_NOT_SELECTED, NO_RETURNS,
)
# Sensor power (fusion_core.runtime.power_gating, sim.sensor_power): what a node may request and
# what a sensor reports; "standby" and "warming" double as absence reasons.
POWER_ON = "on"
POWER_REQUESTS: tuple[str, ...] = (POWER_ON, STANDBY)
POWER_STATES: tuple[str, ...] = (POWER_ON, WARMING, STANDBY)


# ----------------------------------------------------------------------------- sensors
@dataclass(frozen=True)
class SensorSpec:
    """What one modality is, for every layer that handles it."""

    name: str                        # the sensor's name everywhere (configs, topics, ledgers, reports)
    payload_field: str               # FusionSample attribute holding its data
    camera_field: str | None         # FusionSample attribute holding its CameraGeometry (cameras only)
    message_type: str                # ROS 2 message type it arrives as
    detection: bool                  # feeds the BEV grid through a stem (the IMU only gives context)
    stem: str                        # key of fusion_core.model.stems.STEMS that encodes it
    absence_reasons: tuple[str, ...]  # the reasons it can be absent for

    @property
    def fields(self) -> tuple[str, ...]:
        """FusionSample attributes that are None while the sensor is absent."""
        return (self.payload_field,) if self.camera_field is None else (self.payload_field, self.camera_field)


_COMMON_REASONS = (DROPPED_BY_FAULT, NO_CAPTURE, NOT_RECORDED, NO_MESSAGE, NO_CALIBRATION, DECODE_ERROR,
                   NOT_SUBSCRIBED, STANDBY, WARMING, TRAINING_DROPOUT, EVALUATION_DROPOUT)
_DETECTION_REASONS = (*_COMMON_REASONS, EVALUATION_NOT_SELECTED)
_IMAGE = "sensor_msgs/msg/Image"
_CLOUD = "sensor_msgs/msg/PointCloud2"

# In the order used everywhere (model inputs' presence columns, pooled stem features, reports).
SENSOR_SPECS: dict[str, SensorSpec] = {s.name: s for s in (
    SensorSpec("rgb", "rgb", "rgb_camera", _IMAGE, True, "rgb_lift", (*_DETECTION_REASONS, NO_CAMERA_INFO)),
    SensorSpec("depth", "depth_m", "depth_camera", _IMAGE, True, "depth_points", (*_DETECTION_REASONS, NO_CAMERA_INFO, NO_RETURNS)),
    SensorSpec("lidar", "lidar_xyzi", None, _CLOUD, True, "lidar_points", (*_DETECTION_REASONS, NO_RETURNS)),
    SensorSpec("radar", "radar_xyzdr", None, _CLOUD, True, "radar_points", _DETECTION_REASONS),
    SensorSpec("imu", "imu", None, "sensor_msgs/msg/Imu", False, "imu_window", _COMMON_REASONS),
)}
SENSORS: tuple[str, ...] = tuple(SENSOR_SPECS)
DETECTION_SENSORS: tuple[str, ...] = tuple(s for s, spec in SENSOR_SPECS.items() if spec.detection)
CAMERAS: tuple[str, ...] = tuple(s for s, spec in SENSOR_SPECS.items() if spec.camera_field is not None)
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"

# ----------------------------------------------------------------------------- conditions
# Weather/light the simulator renders and the context head estimates (a scenario's label).
CONDITIONS: tuple[str, ...] = ("clear", "night", "rain", "fog", "snow", "glare")


# ----------------------------------------------------------------------------- ledger components
# Names of compute components in the energy ledger, cost table and ``FusionDetector.calls``.
CONTEXT_COMPONENT = "context"                # the context head
HEAD_ENTRY_COMPONENT = "head:entry"          # the head's shared entry block
SENSOR_COMPONENT_PREFIX = "sensor:"          # run totals key sensor energy as "sensor:<name>"


def stem_component(sensor: str) -> str:
    """``"stem:lidar"``: a sensor's feature stem."""
    return f"stem:{sensor}"


def expert_component(expert: str) -> str:
    """``"expert:lidar_radar"``: a fusion expert, by its ExpertConfig name."""
    return f"expert:{expert}"


def exit_component(k: int) -> str:
    """``"exit:0"``: exit head k, 0 = shallowest."""
    return f"exit:{k}"


def gate_component(mode: str) -> str:
    """``"gate:loss"``: a learned gate's own network."""
    return f"gate:{mode}"


def sensor_component(sensor: str) -> str:
    """``"sensor:radar"``: a sensor's energy in run totals."""
    return f"{SENSOR_COMPONENT_PREFIX}{sensor}"
