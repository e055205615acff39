"""ROS 2 topic names and message types of a dyn_fusion recording (bags written by
:mod:`sim.writers.rosbag`; the same names are meant for live publishers), and the sensor power
gating topics (``docs/sensor_power_gating.md``).

    topic                               type                                 content
    /sensors/camera/rgb/image_raw       sensor_msgs/msg/Image                rgb8, camera_rgb_optical_frame
    /sensors/camera/rgb/camera_info     sensor_msgs/msg/CameraInfo           plumb_bob, zero distortion
    /sensors/camera/depth/image_raw     sensor_msgs/msg/Image                32FC1 metres, NaN = no measurement
    /sensors/camera/depth/camera_info   sensor_msgs/msg/CameraInfo           plumb_bob, zero distortion
    /sensors/lidar/points               sensor_msgs/msg/PointCloud2          x y z intensity (FLOAT32), ring (UINT16); 18 B/point
    /sensors/radar/points               sensor_msgs/msg/PointCloud2          x y z doppler rcs (FLOAT32); 20 B/point
    /sensors/imu/data                   sensor_msgs/msg/Imu                  no orientation (orientation_covariance[0] = -1)
    /tf_static                          tf2_msgs/msg/TFMessage               base_link -> every sensor frame, once, transient_local
    /tf                                 tf2_msgs/msg/TFMessage               odom -> base_link, once per frame
    /odom                               nav_msgs/msg/Odometry                ground-truth ego pose, speed, yaw rate, per frame
    /ground_truth/markers               visualization_msgs/msg/MarkerArray   DELETEALL, then per box: cube, label, velocity arrow
    /ground_truth/detections            vision_msgs/msg/Detection3DArray     ground-truth boxes (id = track id)
    /sim/labels                         diagnostic_msgs/msg/DiagnosticArray  condition + per-sensor fault labels, per frame

Point clouds are little-endian, ``height = 1`` (unorganised). The numpy dtypes below view a
cloud's ``data`` bytes directly: ``np.frombuffer(msg.data, LIDAR_POINT_DTYPE)``.
"""
from __future__ import annotations

import numpy as np

# --- camera -----------------------------------------------------------------------------------
RGB_IMAGE_TOPIC = "/sensors/camera/rgb/image_raw"
RGB_INFO_TOPIC = "/sensors/camera/rgb/camera_info"
DEPTH_IMAGE_TOPIC = "/sensors/camera/depth/image_raw"
DEPTH_INFO_TOPIC = "/sensors/camera/depth/camera_info"
# --- point clouds and IMU -----------------------------------------------------------------------
LIDAR_TOPIC = "/sensors/lidar/points"
RADAR_TOPIC = "/sensors/radar/points"
IMU_TOPIC = "/sensors/imu/data"
# --- transforms and ego motion ------------------------------------------------------------------
TF_STATIC_TOPIC = "/tf_static"
TF_TOPIC = "/tf"
ODOM_TOPIC = "/odom"
# --- ground truth and labels --------------------------------------------------------------------
GT_MARKERS_TOPIC = "/ground_truth/markers"
GT_DETECTIONS_TOPIC = "/ground_truth/detections"
LABELS_TOPIC = "/sim/labels"
# --- the fusion node's output -------------------------------------------------------------------
DETECTIONS_TOPIC = "/fusion/detections"          # what the stack stands behind: score threshold and NMS
ALL_DETECTIONS_TOPIC = "/fusion/detections/all"  # every box the model reported (>= 0.05): evaluation, mAP
DETECTIONS_3D_TOPIC = "/fusion/detections_3d"     # the published boxes as vision_msgs/Detection3DArray (recordings)
FRAME_RECORDS_TOPIC = "/fusion/frames"           # per frame: gate, experts, exit, energy, health (DiagnosticArray)
DIAGNOSTICS_TOPIC = "/diagnostics"               # about 1 Hz: the node's health and each input's rate and stamps

# --- message types ------------------------------------------------------------------------------
IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
POINT_CLOUD2_TYPE = "sensor_msgs/msg/PointCloud2"
IMU_TYPE = "sensor_msgs/msg/Imu"
TF_MESSAGE_TYPE = "tf2_msgs/msg/TFMessage"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
MARKER_ARRAY_TYPE = "visualization_msgs/msg/MarkerArray"
DETECTION3D_ARRAY_TYPE = "vision_msgs/msg/Detection3DArray"
DIAGNOSTIC_ARRAY_TYPE = "diagnostic_msgs/msg/DiagnosticArray"

# topic -> message type, in the order the topics are registered in a bag.
TOPIC_TYPES: dict[str, str] = {
    TF_STATIC_TOPIC: TF_MESSAGE_TYPE,
    TF_TOPIC: TF_MESSAGE_TYPE,
    ODOM_TOPIC: ODOMETRY_TYPE,
    RGB_IMAGE_TOPIC: IMAGE_TYPE,
    RGB_INFO_TOPIC: CAMERA_INFO_TYPE,
    DEPTH_IMAGE_TOPIC: IMAGE_TYPE,
    DEPTH_INFO_TOPIC: CAMERA_INFO_TYPE,
    LIDAR_TOPIC: POINT_CLOUD2_TYPE,
    RADAR_TOPIC: POINT_CLOUD2_TYPE,
    IMU_TOPIC: IMU_TYPE,
    GT_MARKERS_TOPIC: MARKER_ARRAY_TYPE,
    GT_DETECTIONS_TOPIC: DETECTION3D_ARRAY_TYPE,
    LABELS_TOPIC: DIAGNOSTIC_ARRAY_TYPE,
}

# sensor name (fusion_core.vocabulary.SENSORS) -> data topic
SENSOR_TOPICS: dict[str, str] = {
    "rgb": RGB_IMAGE_TOPIC,
    "depth": DEPTH_IMAGE_TOPIC,
    "lidar": LIDAR_TOPIC,
    "radar": RADAR_TOPIC,
    "imu": IMU_TOPIC,
}
# camera sensor -> CameraInfo topic
CAMERA_INFO_TOPICS: dict[str, str] = {"rgb": RGB_INFO_TOPIC, "depth": DEPTH_INFO_TOPIC}

# --- payload encodings --------------------------------------------------------------------------
RGB_ENCODING = "rgb8"
DEPTH_ENCODING = "32FC1"

# PointField.datatype codes used here (sensor_msgs/msg/PointField constants)
POINT_FIELD_UINT16 = 4
POINT_FIELD_FLOAT32 = 7

# (name, byte offset, PointField datatype) of each cloud; count is always 1
LIDAR_POINT_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("x", 0, POINT_FIELD_FLOAT32),
    ("y", 4, POINT_FIELD_FLOAT32),
    ("z", 8, POINT_FIELD_FLOAT32),
    ("intensity", 12, POINT_FIELD_FLOAT32),
    ("ring", 16, POINT_FIELD_UINT16),
)
LIDAR_POINT_STEP = 18
RADAR_POINT_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("x", 0, POINT_FIELD_FLOAT32),
    ("y", 4, POINT_FIELD_FLOAT32),
    ("z", 8, POINT_FIELD_FLOAT32),
    ("doppler", 12, POINT_FIELD_FLOAT32),
    ("rcs", 16, POINT_FIELD_FLOAT32),
)
RADAR_POINT_STEP = 20

# Packed little-endian numpy views of one point
LIDAR_POINT_DTYPE = np.dtype({
    "names": ["x", "y", "z", "intensity", "ring"],
    "formats": ["<f4", "<f4", "<f4", "<f4", "<u2"],
    "offsets": [0, 4, 8, 12, 16],
    "itemsize": LIDAR_POINT_STEP,
})
RADAR_POINT_DTYPE = np.dtype({
    "names": ["x", "y", "z", "doppler", "rcs"],
    "formats": ["<f4"] * 5,
    "offsets": [0, 4, 8, 12, 16],
    "itemsize": RADAR_POINT_STEP,
})

# --- /sim/labels layout (diagnostic_msgs/msg/DiagnosticArray) ------------------------------------
LABEL_CONDITION_NAME = "condition"          # status name of the weather condition entry
LABEL_SENSOR_PREFIX = "sensor/"             # status name prefix of each sensor's entry
LABEL_KEY_SEVERITY = "severity"             # condition entry: condition severity in [0, 1]
LABEL_KEY_FAULT = "fault"                   # sensor entry: active fault kind, or "none"
LABEL_KEY_DROPPED = "dropped"               # sensor entry: captures dropped in this frame
LABEL_OK_MESSAGE = "ok"                     # sensor entry message when no fault is active

# --- sensor power gating (docs/sensor_power_gating.md) -------------------------------------------
POWER_MESSAGE_TYPE = "std_msgs/msg/String"  # of both topics; latched (reliable, transient local, depth 1)


def power_request_topic(sensor: str) -> str:
    """Where the fusion node asks ``sensor`` (short name: rgb, depth, lidar, radar, imu) for a state."""
    return f"/sensors/{sensor}/power/request"


def power_state_topic(sensor: str) -> str:
    """Where ``sensor``'s driver reports its power state."""
    return f"/sensors/{sensor}/power/state"
