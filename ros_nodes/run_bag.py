"""The recording of a run (``up --record``, ``replay --record``): a rosbag2 folder with one MCAP
file that Foxglove, ``ros2 bag`` and ``mcap_ros2`` open (no rclpy here).

The energy monitor hands over the raw CDR of what it receives (the fusion node's detections,
``/diagnostics``, the ground truth, and with ``energy.record_topics`` the sensors), and for each
frame's detections also writes them as ``vision_msgs/msg/Detection3DArray`` on
``/fusion/detections_3d`` (``fusion_core.data.detection3d``): the standard message other ROS
tools read, which rclpy cannot publish here (no vision_msgs type support on PyPI) but a bag can
carry, since rosbags embeds each type's full definition as the channel's schema. Log times are
the monitor's ROS clock at reception (the bag's clock in a replay).
"""
from __future__ import annotations

from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.data.ros_types import shared_typestore

RECORD_FOLDER = "record"  # in the run folder: record/record.mcap and record/metadata.yaml


class RunBag:
    """Write messages as they come; :meth:`close` finishes the file (its summary and index)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._writer = Writer(self.folder, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self.counts: dict[str, int] = {}

    def write(self, topic: str, msgtype: str, log_ns: int, cdr: bytes) -> None:
        """One message (raw CDR) of ``topic`` with type ``msgtype`` at ``log_ns``."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(topic, msgtype,
                                                                          typestore=shared_typestore())
        self._writer.write(conn, int(log_ns), bytes(cdr))
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        self._writer.close()
