"""The ROS 2 type store used to write and read dyn_fusion bags.

rosbags ships the standard ROS 2 Kilted interfaces, but not ``vision_msgs``. The five
vision_msgs definitions the bags use are written out below (field for field as in the ROS 2
vision_msgs package, without comments) and registered on top of the Kilted store.

rosbags embeds each type's full definition as the MCAP schema of its channel (the ``ros2msg``
encoding: the top-level definition followed by one ``====...`` / ``MSG: pkg/Type`` section per
dependency), so any MCAP reader - mcap_ros2, Foxglove, ``ros2 bag`` - can decode the bag
without having vision_msgs installed. :func:`message_definition` returns that exact text.
"""
from __future__ import annotations

from functools import cache

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

# type name -> .msg text (only what the bags need from vision_msgs)
VISION_MSGS_DEFINITIONS: dict[str, str] = {
    "vision_msgs/msg/ObjectHypothesis": (
        "string class_id\n"
        "float64 score\n"
    ),
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "vision_msgs/ObjectHypothesis hypothesis\n"
        "geometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/BoundingBox3D": (
        "geometry_msgs/Pose center\n"
        "geometry_msgs/Vector3 size\n"
    ),
    "vision_msgs/msg/Detection3D": (
        "std_msgs/Header header\n"
        "vision_msgs/ObjectHypothesisWithPose[] results\n"
        "vision_msgs/BoundingBox3D bbox\n"
        "string id\n"
    ),
    "vision_msgs/msg/Detection3DArray": (
        "std_msgs/Header header\n"
        "vision_msgs/Detection3D[] detections\n"
    ),
}


def ros2_typestore() -> Typestore:
    """A fresh ROS 2 Kilted type store with the vision_msgs types above registered."""
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name, text in VISION_MSGS_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@cache
def shared_typestore() -> Typestore:
    """One process-wide :func:`ros2_typestore` (rosbags compiles each type's (de)serializer on
    first use and caches it in the store, so reusing the store makes later bags start faster).
    Treat it as read-only: register extra types on a :func:`ros2_typestore` of your own."""
    return ros2_typestore()


def message_definition(msgtype: str, typestore: Typestore | None = None) -> str:
    """The full ``ros2msg`` definition of ``msgtype`` (with all dependencies), exactly as it is
    embedded as MCAP schema data in the bags."""
    store = typestore if typestore is not None else ros2_typestore()
    text, _ = store.generate_msgdef(msgtype, ros_version=2)
    return text
