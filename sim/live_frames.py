"""Frames for a live publisher: simulate ahead of the wall clock, skipping sensors in standby.

A live publisher (``ros_nodes.sim_node``) must hand out frame k's messages while frame k+1 is
being simulated, or every frame would start late by its own simulation time. A
:class:`FrameProducer` thread therefore runs the simulator a bounded number of frames ahead and
delivers each frame as serialised messages (:class:`FrameBatch`); the publisher paces them.

Sensors in standby cost no ray casting: :class:`SwitchableSimulator` asks, per capture, which
sensors are wanted and skips the scene and the cast of the others. Such a capture still yields
a reading (the simulator's loop is unchanged), whose payload is the :data:`NOT_CAPTURED`
marker; it is never turned into a message.
"""
from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from fusion_core.config_io import ConfigError
from sim.config import ScenarioConfig
from sim.readings import SensorReading
from sim.simulator import Simulator
from sim.writers.frame_messages import FrameMessageBuilder

# Payload of a capture the simulator skipped (the sensor was not wanted). Compared by identity;
# read-only so that nothing can fill it with fake data.
NOT_CAPTURED: np.ndarray = np.empty(0, np.float32)
NOT_CAPTURED.flags.writeable = False
# frames_for_duration's answer when the road never runs out (an ego standing still): ~19 days at 10 Hz.
_MAX_FRAMES = 2**24


def was_captured(reading: SensorReading) -> bool:
    """False for a reading whose capture :class:`SwitchableSimulator` skipped."""
    return reading.data is not NOT_CAPTURED


class SwitchableSimulator(Simulator):
    """A :class:`Simulator` that ray-casts only the sensors in ``wanted_sensors()`` (asked at
    every capture, so it may change between frames; called from the simulating thread).

    It hooks the simulator's per-capture seam (``_context`` builds the scene, ``_capture`` casts),
    the same one the sensor tests use; the IMU is computed anyway (no ray casting, cheap).
    """

    def __init__(self, config: ScenarioConfig, wanted_sensors: Callable[[], Collection[str]], threads: int = 1):
        super().__init__(config, threads)
        self._wanted_sensors = wanted_sensors

    def _context(self, sensor, t, ego, fault, rng, scenes):
        if sensor not in self._wanted_sensors():
            return None  # no scene built for an unwanted capture
        return super()._context(sensor, t, ego, fault, rng, scenes)

    def _capture(self, sensor, ctx):
        if ctx is None:
            # The LiDAR also returns the object hit by each point; None leaves the frame's
            # ground-truth hit counts unknown (-1), as for a frozen scan.
            return (NOT_CAPTURED, None) if sensor == "lidar" else NOT_CAPTURED
        return super()._capture(sensor, ctx)


def frames_for_duration(simulator: Simulator, duration_s: float) -> int:
    """Frames covering ``duration_s`` scenario seconds (frames starting before it); 0 s means
    as many as the scenario's road allows. ConfigError when the road is too short."""
    period_s = simulator.frame_period_s
    if duration_s > 0:
        n_frames = max(1, math.ceil(duration_s / period_s - 1e-9))
        simulator.check_frames(n_frames)
        return n_frames
    simulator.check_frames(1)
    lo, hi = 1, 2
    while _road_allows(simulator, hi):  # double, then bisect: the largest n the road allows
        if hi >= _MAX_FRAMES:
            return _MAX_FRAMES
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _road_allows(simulator, mid) else (lo, mid)
    return lo


def _road_allows(simulator: Simulator, n_frames: int) -> bool:
    try:
        simulator.check_frames(n_frames)
    except ConfigError:
        return False
    return True


@dataclass(frozen=True)
class OutgoingMessage:
    """One serialised message, due at ``due_ns`` (its delivery time)."""

    topic: str
    sensor: str | None   # the sensor whose data it is; None for ground truth, labels, odom, tf
    stamp_ns: int        # header stamp, ns (epoch + capture time)
    due_ns: int          # delivery time, ns (epoch + receive time); >= stamp_ns
    cdr: bytes           # CDR bytes of the message


@dataclass(frozen=True)
class FrameBatch:
    """Everything one frame delivers, in the builder's order (ties in due time keep it)."""

    index: int
    frame_ns: int                          # epoch + frame start time, ns
    messages: tuple[OutgoingMessage, ...]


class FrameProducer:
    """Simulates ``n_frames`` frames in a background thread, at most ``ahead_frames`` ahead of
    the consumer, and hands them out as :class:`FrameBatch` objects through :meth:`next_batch`.

    Only ``topics`` are serialised (with ``serialize(msg, msgtype) -> bytes``), and a sensor's
    readings only while it is in ``wanted_sensors()``. An exception in the thread is raised by
    the :meth:`next_batch` call that would have returned the failed frame.
    """

    def __init__(self, simulator: Simulator, builder: FrameMessageBuilder, n_frames: int,
                 topics: Collection[str], serialize: Callable[[Any, str], bytes],
                 wanted_sensors: Callable[[], Collection[str]], ahead_frames: int = 2):
        if ahead_frames < 1:
            raise ValueError(f"ahead_frames must be >= 1, got {ahead_frames}")
        self.simulator = simulator
        self.builder = builder
        self.n_frames = n_frames
        self._topics = frozenset(topics)
        self._serialize = serialize
        self._wanted_sensors = wanted_sensors
        # One frame is being simulated while ahead_frames - 1 wait: ahead_frames in all.
        self._queue: queue.Queue[FrameBatch | BaseException] = queue.Queue(maxsize=max(1, ahead_frames - 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame_producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the thread to finish (after the frame it is simulating) and wait ``timeout_s``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def next_batch(self, timeout_s: float) -> FrameBatch | None:
        """The next frame, or None if it is not ready within ``timeout_s``."""
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def _run(self) -> None:
        try:
            for frame in self.simulator.run(self.n_frames):
                if self._stop.is_set():
                    return
                self._put(self._batch(frame))
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: FrameBatch | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _batch(self, frame) -> FrameBatch:
        wanted = self._wanted_sensors()
        records = [(None, m) for m in self.builder.ground_truth_messages(frame)]
        for reading in frame.readings:
            if reading.sensor in wanted and was_captured(reading):
                records += [(reading.sensor, m) for m in self.builder.reading_messages(reading)]
        messages = tuple(
            OutgoingMessage(m.topic, sensor, m.stamp_ns, m.log_ns, self._serialize(m.msg, m.msgtype))
            for sensor, m in records if m.topic in self._topics)
        return FrameBatch(frame.index, self.builder.ns(frame.time_s), messages)
