"""Record simulator frames as a ROS 2 bag (rosbag2 directory, MCAP storage).

Usage::

    from sim.config import ScenarioConfig
    from sim.simulator import Simulator
    from sim.writers.rosbag import RosbagWriter

    sim = Simulator(ScenarioConfig())
    with RosbagWriter(Path("runs/demo_bag"), sim, overwrite=True) as bag:
        for frame in sim.run(100):
            bag.write_frame(frame)
    # bag.counts: messages written per topic (also returned by bag.close())

What ends up in the bag (topic names and types: :mod:`fusion_core.data.topics`; full description:
``docs/bag_format.md``):

* every delivered sensor capture (dropped captures write nothing), each camera image with a
  CameraInfo of the same stamp;
* ``/tf_static`` once at the start (base_link -> each sensor frame, offered QoS
  transient_local so ``ros2 bag play`` latches it), then per frame ``/tf`` (odom -> base_link),
  ``/odom``, ground-truth markers and detections, and the ``/sim/labels`` condition/fault labels.

Time: a scenario time ``t`` (seconds from 0) maps to ``epoch_to_ns(epoch_s) + round(t * 1e9)``
nanoseconds (``epoch_to_ns`` is exact for the float given). Header stamps are the capture time
(frame time for ground truth and labels); the bag's log time of a message is its delivery time
(``SensorReading.receive_time_s``), so a latency fault shows up as log time > header stamp.
Messages are written in non-decreasing log time: readings are held back until no later frame can
deliver anything earlier. The messages themselves come from
:class:`sim.writers.frame_messages.FrameMessageBuilder` (shared with the live ``sim_node``).

Types are the standard ROS 2 (Kilted) messages, plus vision_msgs/msg/Detection3DArray whose
definition is registered from :mod:`fusion_core.data.ros_types`; every channel carries its full
message definition, so the bag decodes without any ROS installation.

Leaving the ``with`` block - normally or through an exception - flushes and finalises the bag,
so an interrupted recording is still a valid bag of the frames written so far.
"""
from __future__ import annotations

import heapq
import itertools
import json
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_core.config_io import to_mapping
from fusion_core.data import topics as T
from fusion_core.data.ros_types import shared_typestore
from sim.readings import SimFrame
from sim.simulator import Simulator
from sim.writers.frame_messages import NS_PER_S, FrameMessageBuilder, TimedMessage

BAG_VERSION = 9  # rosbag2 metadata version (Jazzy and later)
# Readings are flushed once their log time is this far below the next frame's start: covers the
# sub-nanosecond slack of the simulator's capture schedule and float rounding.
_FLUSH_MARGIN_NS = 1_000
_BAG_FILE_NAMES = ("metadata.yaml",)
_BAG_FILE_SUFFIXES = (".mcap", ".db3", ".zstd", ".tmp")


def _qos(durability: QosDurability, depth: int) -> Qos:
    zero = QosTime(0, 0)  # 0/0 = "unspecified" -> the rmw default (infinite)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE, durability, zero, zero,
               QosLiveliness.AUTOMATIC, zero, False)


# Reliable publishers match both reliable and best-effort subscribers on playback.
QOS_DEFAULT = _qos(QosDurability.VOLATILE, 10)
QOS_LATCHED = _qos(QosDurability.TRANSIENT_LOCAL, 1)


def epoch_to_ns(epoch_s: float) -> int:
    """Unix seconds -> integer nanoseconds, splitting off the whole seconds first so the result
    is exact for the float given (``round(epoch_s * 1e9)`` would be off by up to 128 ns, since
    float64 cannot hold ~1.7e18 to the nanosecond)."""
    whole = int(epoch_s // 1)
    return whole * NS_PER_S + round((epoch_s - whole) * NS_PER_S)


def _looks_like_bag(path: Path) -> bool:
    """True when a directory holds nothing but rosbag2 files (safe to delete on overwrite)."""
    return all(p.is_file() and (p.name in _BAG_FILE_NAMES or p.name.endswith(_BAG_FILE_SUFFIXES))
               for p in path.iterdir())


class RosbagWriter:
    """Writes :class:`SimFrame` objects of ``simulator`` to a rosbag2/MCAP bag at ``path``.

    ``path`` is the bag directory (created; the MCAP file inside is ``<path>/<path.name>.mcap``).
    An existing ``path`` raises FileExistsError unless ``overwrite`` is set; then it is removed
    first (only if it is a file or a directory of bag files). ``epoch_s`` is the wall-clock time
    (Unix seconds) that scenario time 0 maps to.
    """

    def __init__(self, path: Path, simulator: Simulator, *, overwrite: bool = False,
                 epoch_s: float = 1_700_000_000.0):
        path = Path(path)
        if not 0.0 < epoch_s < 2**31 - 10**6:
            raise ValueError(f"epoch_s must be a positive Unix time that fits ROS time (int32 seconds), got {epoch_s}")
        if path.exists() or path.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{path}: a bag (or file) already exists there; pass overwrite=True "
                                      f"(CLI: --overwrite) to replace it, or choose another path")
            if path.is_dir() and not path.is_symlink():
                if not _looks_like_bag(path):
                    raise FileExistsError(f"{path}: exists and holds files that are not part of a rosbag2 "
                                          f"bag; refusing to delete it even with overwrite=True")
                shutil.rmtree(path)
            else:
                path.unlink()
        self.path = path
        self.mcap_path = path / f"{path.name}.mcap"
        self.simulator = simulator
        self.epoch_s = float(epoch_s)
        self._epoch_ns = epoch_to_ns(epoch_s)
        self._period_s = simulator.frame_period_s
        self._ts = shared_typestore()
        self._messages = FrameMessageBuilder(simulator, self._epoch_ns)
        self._closed = False
        self._last_frame_index = -1
        self._last_log_ns = 0
        self._pending: list[tuple[int, int, Any, str, memoryview]] = []  # heap: (log_ns, order, conn, topic, cdr)
        self._order = itertools.count()
        self.counts: dict[str, int] = {topic: 0 for topic in T.TOPIC_TYPES}

        self._writer = Writer(path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        cfg = simulator.config
        self._writer.set_custom_data("dyn_fusion.epoch_s", repr(self.epoch_s))
        self._writer.set_custom_data("dyn_fusion.epoch_ns", str(self._epoch_ns))
        self._writer.set_custom_data("dyn_fusion.scenario", cfg.name)
        self._writer.set_custom_data("dyn_fusion.scenario_config", json.dumps(to_mapping(cfg), sort_keys=True))
        self._writer.open()
        try:
            self._conns = {
                topic: self._writer.add_connection(
                    topic, msgtype, typestore=self._ts,
                    offered_qos_profiles=[QOS_LATCHED if topic == T.TF_STATIC_TOPIC else QOS_DEFAULT])
                for topic, msgtype in T.TOPIC_TYPES.items()
            }
            for m in self._messages.static_messages():
                self._write(m.log_ns, self._conns[m.topic], m.topic, self._serialize(m))
        except BaseException:
            self._writer.abort()
            self._closed = True
            raise

    # ------------------------------------------------------------------ public API
    def write_frame(self, frame: SimFrame) -> None:
        """Queue the frame's ground truth, labels and readings by log time, then write every
        queued message that no later frame can precede (late deliveries wait in the queue)."""
        if self._closed:
            raise RuntimeError(f"{self.path}: write_frame() after close()")
        if frame.index <= self._last_frame_index:
            raise ValueError(f"frames must be written in order: got frame {frame.index} after {self._last_frame_index}")
        self._last_frame_index = frame.index
        for m in self._messages.frame_messages(frame):
            self._queue(m)
        self._flush(self._messages.ns(frame.time_s + self._period_s) - _FLUSH_MARGIN_NS)

    def close(self) -> dict[str, int]:
        """Write everything still queued, finalise the bag; returns messages per topic
        (every topic of :data:`fusion_core.data.topics.TOPIC_TYPES`, zero when none). Idempotent."""
        if not self._closed:
            self._closed = True
            try:
                self._flush(None)
            except BaseException:
                self._writer.abort()
                raise
            self._writer.close()
        return dict(self.counts)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ queueing and writing
    def _serialize(self, m: TimedMessage) -> memoryview:
        return self._ts.serialize_cdr(m.msg, m.msgtype)

    def _queue(self, m: TimedMessage) -> None:
        # Serialised at once, so a queued late delivery holds bytes, not the simulator's arrays.
        heapq.heappush(self._pending, (m.log_ns, next(self._order), self._conns[m.topic], m.topic,
                                       self._serialize(m)))

    def _write(self, log_ns: int, conn: Any, topic: str, data: memoryview) -> None:
        if log_ns < self._last_log_ns:  # a broken invariant, never expected
            raise RuntimeError(f"{topic}: log time {log_ns} ns would go back in time (last {self._last_log_ns} ns)")
        self._last_log_ns = log_ns
        self._writer.write(conn, log_ns, data)
        self.counts[topic] += 1

    def _flush(self, before_ns: int | None) -> None:
        pending = self._pending
        while pending and (before_ns is None or pending[0][0] < before_ns):
            log_ns, _, conn, topic, data = heapq.heappop(pending)
            self._write(log_ns, conn, topic, data)


def write_bag(path: Path, simulator: Simulator, n_frames: int, *, overwrite: bool = False,
              epoch_s: float = 1_700_000_000.0) -> dict[str, int]:
    """Run ``simulator`` for ``n_frames`` frames straight into a bag; returns messages per topic."""
    with RosbagWriter(path, simulator, overwrite=overwrite, epoch_s=epoch_s) as bag:
        for frame in simulator.run(n_frames):
            bag.write_frame(frame)
    return bag.counts
