"""Writing simulator frames into a shard dataset (``ShardWriter``). The format is defined in
``fusion_core.data.shard_format`` (``docs/shard_format.md``) and read by
``fusion_core.data.shard_reader``; this module turns ``SimFrame`` objects into its arrays.

Camera, LiDAR and radar payloads are those of ``frame.latest(sensor)``; the IMU window of a frame
is built from the IMU readings of the frames given to the writer (write consecutive frames for
full windows).
"""
from __future__ import annotations

import json
import os
import shutil
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from fusion_core.boxes import BOX_DIM, BOX_FIELDS, CLASS_NAMES
from fusion_core.config_io import from_mapping, to_mapping
from fusion_core.data.shard_format import (
    ABSENCE_REASONS,
    DROPPED_BY_FAULT,
    FORMAT_NAME,
    FORMAT_VERSION,
    IMU_ROW_FIELDS,
    INDEX_FILE,
    LIDAR_FIELDS,
    NO_CAPTURE,
    PRESENT,
    RADAR_FIELDS,
    SHARD_KEYS,
    calibration_to_plain,
    shard_name,
)
from fusion_core.data.shard_reader import ShardDataset
from fusion_core.vocabulary import CONDITIONS, DETECTION_SENSORS, SENSORS
from sim.config import FAULT_KINDS, ScenarioConfig
from sim.readings import SimFrame

_SENSOR_COL = {name: i for i, name in enumerate(SENSORS)}
_STAMP_EPS_S = 1e-9


def _offsets(counts: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def _concat(parts: list[np.ndarray], cols: int, dtype) -> np.ndarray:
    if not parts:
        return np.zeros((0, cols), dtype)
    return np.concatenate([np.asarray(p, dtype).reshape(-1, cols) for p in parts], axis=0)


class ShardWriter:
    """Writes ``SimFrame`` objects of one simulator run into a shard dataset (``fusion_core.data.shard_format``).

    Use as a context manager; ``close()`` flushes the last shard and writes ``index.json``.
    When the ``with`` block raises, no index is written, so the dataset reads as incomplete.
    """

    def __init__(self, path: Path, simulator, *, frames_per_shard: int = 64, imu_window_s: float = 0.5,
                 overwrite: bool = False):
        if frames_per_shard < 1:
            raise ValueError(f"frames_per_shard must be >= 1, got {frames_per_shard}")
        if not imu_window_s > 0.0:
            raise ValueError(f"imu_window_s must be > 0, got {imu_window_s}")
        self.path = Path(path)
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise FileExistsError(
                    f"{self.path}: already exists; pass overwrite=True to replace it, or choose another path")
            if self.path.is_dir() and not self.path.is_symlink():
                shutil.rmtree(self.path)
            else:
                self.path.unlink()
        self.path.mkdir(parents=True)
        self.simulator = simulator
        self.frames_per_shard = int(frames_per_shard)
        self.imu_window_s = float(imu_window_s)
        cal = simulator.calibration
        self._rgb_shape = (cal["rgb"].intrinsics.height_px, cal["rgb"].intrinsics.width_px, 3)
        self._depth_shape = (cal["depth"].intrinsics.height_px, cal["depth"].intrinsics.width_px)
        self._pending: list[dict[str, Any]] = []
        self._imu_buffer: deque[tuple[float, float, np.ndarray]] = deque()  # capture, receive, sample
        self._imu_dropped: deque[float] = deque()
        self._shards: list[dict[str, Any]] = []
        self._n_frames = 0
        self._bytes = 0
        self._last_time: float | None = None
        self._closed = False
        self._summary: dict[str, Any] | None = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._closed = True  # leave the dataset without an index: detectably incomplete

    # ------------------------------------------------------------------ per frame
    def write_frame(self, frame: SimFrame) -> None:
        if self._closed:
            raise RuntimeError(f"{self.path}: writer is closed")
        t = float(frame.time_s)
        if self._last_time is not None and t <= self._last_time:
            raise ValueError(f"frames must be written in increasing time order: {t} after {self._last_time}")
        self._last_time = t
        self._pending.append(self._pack(frame))
        if len(self._pending) >= self.frames_per_shard:
            self._flush()

    def _pack(self, frame: SimFrame) -> dict[str, Any]:
        t = float(frame.time_s)
        n_s = len(SENSORS)
        rec: dict[str, Any] = {
            "present": np.zeros(n_s, bool), "absence": np.full(n_s, NO_CAPTURE, np.int8),
            "stamp_s": np.full(n_s, np.nan), "receive_s": np.full(n_s, np.nan),
            "fault": np.array([FAULT_KINDS.index(frame.active_faults[s]) if s in frame.active_faults else -1
                               for s in SENSORS], np.int8),
        }
        dropped_here = {d.sensor for d in frame.dropped}
        for sensor in DETECTION_SENSORS:
            col = _SENSOR_COL[sensor]
            r = frame.latest(sensor)
            if r is None:
                rec["absence"][col] = DROPPED_BY_FAULT if sensor in dropped_here else NO_CAPTURE
                rec[sensor] = None
                continue
            rec["present"][col] = True
            rec["absence"][col] = PRESENT
            rec["stamp_s"][col] = r.capture_time_s
            rec["receive_s"][col] = r.receive_time_s
            rec[sensor] = r.data
        for cam, shape in (("rgb", self._rgb_shape), ("depth", self._depth_shape)):
            if rec[cam] is not None and rec[cam].shape != shape:
                raise ValueError(f"{cam} image shape {rec[cam].shape} does not match the calibration {shape}")

        # IMU: rolling buffer of delivered samples and of dropped capture times.
        imu_col = _SENSOR_COL["imu"]
        for r in frame.readings:
            if r.sensor == "imu":
                self._imu_buffer.append((r.capture_time_s, r.receive_time_s, np.asarray(r.data, np.float64)))
        for d in frame.dropped:
            if d.sensor == "imu":
                self._imu_dropped.append(d.capture_time_s)
        lo = t - self.imu_window_s + _STAMP_EPS_S
        hi = t + _STAMP_EPS_S
        while self._imu_buffer and self._imu_buffer[0][0] <= lo:
            self._imu_buffer.popleft()
        while self._imu_dropped and self._imu_dropped[0] <= lo:
            self._imu_dropped.popleft()
        window = [(ts, tr, s) for ts, tr, s in self._imu_buffer if ts <= hi]
        n_dropped = sum(1 for ts in self._imu_dropped if ts <= hi)
        imu = np.empty((len(window), 7), np.float64)
        for k, (ts, _tr, s) in enumerate(window):
            imu[k, 0] = ts
            imu[k, 1:] = s
        rec["imu"] = imu
        rec["imu_dropped"] = n_dropped
        if window:
            rec["present"][imu_col] = True
            rec["absence"][imu_col] = PRESENT
            rec["stamp_s"][imu_col] = window[-1][0]
            rec["receive_s"][imu_col] = window[-1][1]
        else:
            rec["absence"][imu_col] = DROPPED_BY_FAULT if n_dropped else NO_CAPTURE

        rec.update(
            frame_index=int(frame.index), time_s=t,
            gt_boxes=np.asarray(frame.gt_boxes, np.float32).reshape(-1, BOX_DIM),
            gt_track_ids=np.asarray(frame.gt_track_ids, np.int32),
            gt_lidar_hits=np.asarray(frame.gt_lidar_hits, np.int32),
            gt_visibility=np.asarray(frame.gt_visibility, np.float32),
            ego_pose_xyyaw=np.asarray(frame.ego_pose_xyyaw, np.float64), ego_speed_mps=float(frame.ego_speed_mps),
            ego_yaw_rate_radps=float(frame.ego_yaw_rate_radps), condition=CONDITIONS.index(frame.condition),
            severity=float(frame.severity),
        )
        return rec

    def _flush(self) -> None:
        if not self._pending:
            return
        recs, self._pending = self._pending, []
        n = len(recs)
        rgb = np.zeros((n,) + self._rgb_shape, np.uint8)
        depth = np.zeros((n,) + self._depth_shape, np.float32)
        for j, r in enumerate(recs):
            if r["rgb"] is not None:
                rgb[j] = r["rgb"]
            if r["depth"] is not None:
                depth[j] = r["depth"]

        def ragged(key, cols, dtype):
            parts = [r[key] for r in recs if r[key] is not None]
            counts = [0 if r[key] is None else len(r[key]) for r in recs]
            return _concat(parts, cols, dtype), _offsets(counts)

        lidar, lidar_off = ragged("lidar", len(LIDAR_FIELDS), np.float32)
        radar, radar_off = ragged("radar", len(RADAR_FIELDS), np.float32)
        imu, imu_off = ragged("imu", len(IMU_ROW_FIELDS), np.float64)
        boxes, box_off = ragged("gt_boxes", BOX_DIM, np.float32)
        arrays = {
            "frame_index": np.array([r["frame_index"] for r in recs], np.int64),
            "time_s": np.array([r["time_s"] for r in recs], np.float64),
            "rgb": rgb, "depth": depth,
            "lidar_points": lidar, "lidar_offsets": lidar_off,
            "radar_points": radar, "radar_offsets": radar_off,
            "imu": imu, "imu_offsets": imu_off,
            "imu_dropped": np.array([r["imu_dropped"] for r in recs], np.int32),
            "present": np.stack([r["present"] for r in recs]),
            "absence": np.stack([r["absence"] for r in recs]),
            "stamp_s": np.stack([r["stamp_s"] for r in recs]),
            "receive_s": np.stack([r["receive_s"] for r in recs]),
            "fault": np.stack([r["fault"] for r in recs]),
            "gt_boxes": boxes, "gt_offsets": box_off,
            "gt_track_ids": np.concatenate([r["gt_track_ids"] for r in recs]).astype(np.int32),
            "gt_lidar_hits": np.concatenate([r["gt_lidar_hits"] for r in recs]).astype(np.int32),
            "gt_visibility": np.concatenate([r["gt_visibility"] for r in recs]).astype(np.float32),
            "ego_pose_xyyaw": np.stack([r["ego_pose_xyyaw"] for r in recs]),
            "ego_speed_mps": np.array([r["ego_speed_mps"] for r in recs], np.float64),
            "ego_yaw_rate_radps": np.array([r["ego_yaw_rate_radps"] for r in recs], np.float64),
            "condition": np.array([r["condition"] for r in recs], np.int8),
            "severity": np.array([r["severity"] for r in recs], np.float64),
        }
        assert set(arrays) == set(SHARD_KEYS)
        name = shard_name(len(self._shards))
        final = self.path / name
        tmp = self.path / (name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, final)
        size = final.stat().st_size
        self._bytes += size
        self._shards.append({
            "file": name, "first_frame": self._n_frames, "n_frames": n, "bytes": size,
            "time_s": [float(arrays["time_s"][0]), float(arrays["time_s"][-1])],
        })
        self._n_frames += n

    # ------------------------------------------------------------------ finish
    def close(self) -> dict[str, Any]:
        """Flush the last shard, write ``index.json`` (atomically), return a summary
        ``{"path", "frames", "shards", "bytes"}``. Calling it again returns the same summary."""
        if self._summary is not None:
            return self._summary
        if self._closed:
            raise RuntimeError(f"{self.path}: writer was aborted; the dataset has no index")
        self._flush()
        self._closed = True
        index = self._index()
        tmp = self.path / (INDEX_FILE + ".tmp")
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, self.path / INDEX_FILE)
        self._bytes += (self.path / INDEX_FILE).stat().st_size
        self._summary = {"path": str(self.path), "frames": self._n_frames, "shards": len(self._shards),
                         "bytes": self._bytes}
        return self._summary

    def _index(self) -> dict[str, Any]:
        sim = self.simulator
        cfg = sim.config
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "n_frames": self._n_frames,
            "frame_rate_hz": float(cfg.frame_rate_hz),
            "imu_window_s": self.imu_window_s,
            "sensors": list(SENSORS),
            "sensor_rates_hz": {s: float(sim.sensor_rate_hz(s)) for s in SENSORS},
            "image_shapes": {"rgb": list(self._rgb_shape), "depth": list(self._depth_shape)},
            "calibration": calibration_to_plain(sim.calibration),
            "class_names": list(CLASS_NAMES),
            "fields": {
                "gt_boxes": list(BOX_FIELDS), "lidar_points": list(LIDAR_FIELDS),
                "radar_points": list(RADAR_FIELDS), "imu": list(IMU_ROW_FIELDS),
            },
            "vocabularies": {
                "condition": list(CONDITIONS), "fault": list(FAULT_KINDS), "absence": list(ABSENCE_REASONS),
            },
            "shard_keys": list(SHARD_KEYS),
            "shards": self._shards,
            "scenario": to_mapping(cfg),
        }


def dataset_scenario(dataset: ShardDataset) -> ScenarioConfig:
    """The scenario ``dataset`` was simulated from (its index's copy, strictly re-validated)."""
    return from_mapping(ScenarioConfig, dataset.config_mapping)
