"""Training-dataset shards: simulator frames stored as uncompressed ``.npz`` files plus an index.

A dataset is a directory::

    <dataset>/
        index.json          written last (atomically): its presence marks a complete dataset
        shard_00000.npz     frames [0, frames_per_shard)
        shard_00001.npz     ...

``index.json`` holds: ``format`` ("dyn_fusion.shards") and ``version``; the scenario config as
plain data; the calibration of every sensor (frame id, 4x4 ``base_from_sensor``, camera
intrinsics); sensor and frame rates; the IMU window length; class names; the field layouts of
boxes, LiDAR, radar and IMU rows; the vocabularies behind every integer code (sensors,
conditions, fault kinds, absence reasons); and the shard list with frame ranges.

Each shard holds ``n`` frames (``np.savez``, no compression, so loading is a plain read).
``S = len(SENSOR_NAMES)`` = 5, columns in ``SENSOR_NAMES`` order (rgb, depth, lidar, radar, imu).
Ragged data is concatenated over the shard's frames, with an ``(n + 1,)`` int64 offsets array:
frame ``j`` owns rows ``offsets[j]:offsets[j + 1]``.

    key                   shape            dtype    meaning
    frame_index           (n,)             int64    SimFrame.index
    time_s                (n,)             float64  frame time
    rgb                   (n, H, W, 3)     uint8    image of frame.latest("rgb") (zeros when absent)
    depth                 (n, h, w)        float32  metres, NaN = invalid (zeros when absent)
    lidar_points          (P, 5)           float32  x, y, z, intensity, ring in the lidar frame
    lidar_offsets         (n + 1,)         int64
    radar_points          (R, 5)           float32  x, y, z, doppler, rcs in the radar frame
    radar_offsets         (n + 1,)         int64
    imu                   (K, 7)           float64  t, ax, ay, az, gx, gy, gz: samples in (t - window, t]
    imu_offsets           (n + 1,)         int64
    imu_dropped           (n,)             int32    IMU captures lost to faults inside the window
    present               (n, S)           bool     the sensor's payload is stored for this frame
    absence               (n, S)           int8     index into ABSENCE_REASONS
    stamp_s               (n, S)           float64  capture time of the stored payload (NaN if absent)
    receive_s             (n, S)           float64  delivery time of the stored payload (NaN if absent)
    fault                 (n, S)           int8     active fault at frame time: index into FAULT_KINDS, -1 none
    gt_boxes              (B, 11)          float32  base_link boxes (fusion_core.boxes layout)
    gt_offsets            (n + 1,)         int64
    gt_track_ids          (B,)             int32
    gt_lidar_hits         (B,)             int32    -1 where the frame has no fresh LiDAR scan
    gt_visibility         (B,)             float32  geometric visibility in [0, 1] (sim.visibility)
    ego_pose_xyyaw        (n, 3)           float64  world x, y, yaw of base_link
    ego_speed_mps         (n,)             float64
    ego_yaw_rate_radps    (n,)             float64
    condition             (n,)             int8     index into CONDITIONS
    severity              (n,)             float64

Camera, LiDAR and radar payloads are those of ``frame.latest(sensor)`` (the first delivered
capture of the frame; radar runs faster than the frame clock, later scans of the frame are not
stored). The IMU window is causal: every IMU sample with capture time in
``(time_s - imu_window_s, time_s]`` (1e-9 s tolerance on both ends) taken from the frames given
to the writer, so consecutive frames should be written for full windows.

An absent modality is never zeros pretending to be data: ``ShardDataset`` returns ``None`` for
it and the reason (``dropped_by_fault`` or ``no_capture``) in ``ShardFrame.absence``.
"""
from __future__ import annotations

import bisect
import json
import os
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_core.boxes import BOX_DIM, BOX_FIELDS, CLASS_NAMES
from fusion_core.config_io import to_mapping
from sim.calibration import SensorCalibration
from sim.config import CONDITIONS, FAULT_KINDS, SENSOR_NAMES
from sim.readings import IMU_FIELDS, LIDAR_FIELDS, RADAR_FIELDS, SimFrame
from sim.sensors.camera import PinholeIntrinsics

FORMAT_NAME = "dyn_fusion.shards"
FORMAT_VERSION = 2  # 2: gt_visibility
INDEX_FILE = "index.json"
ABSENCE_REASONS: tuple[str, ...] = ("present", "dropped_by_fault", "no_capture")
PRESENT, DROPPED_BY_FAULT, NO_CAPTURE = range(len(ABSENCE_REASONS))
IMU_ROW_FIELDS: tuple[str, ...] = ("t",) + IMU_FIELDS
_SENSOR_COL = {name: i for i, name in enumerate(SENSOR_NAMES)}
_STAMP_EPS_S = 1e-9
_SHARD_KEYS = (
    "frame_index", "time_s", "rgb", "depth", "lidar_points", "lidar_offsets", "radar_points", "radar_offsets",
    "imu", "imu_offsets", "imu_dropped", "present", "absence", "stamp_s", "receive_s", "fault", "gt_boxes",
    "gt_offsets", "gt_track_ids", "gt_lidar_hits", "gt_visibility", "ego_pose_xyyaw", "ego_speed_mps", "ego_yaw_rate_radps",
    "condition", "severity",
)


class ShardFormatError(ValueError):
    """A dataset file is missing, truncated, corrupt or of an unknown format (message names it)."""


def shard_name(i: int) -> str:
    return f"shard_{i:05d}.npz"


def _offsets(counts: list[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64)


def _concat(parts: list[np.ndarray], cols: int, dtype) -> np.ndarray:
    if not parts:
        return np.zeros((0, cols), dtype)
    return np.concatenate([np.asarray(p, dtype).reshape(-1, cols) for p in parts], axis=0)


def _calibration_to_plain(cal: dict[str, SensorCalibration]) -> dict[str, Any]:
    out = {}
    for name, c in cal.items():
        intr = None
        if c.intrinsics is not None:
            i = c.intrinsics
            intr = {"width_px": int(i.width_px), "height_px": int(i.height_px), "fx": float(i.fx),
                    "fy": float(i.fy), "cx": float(i.cx), "cy": float(i.cy)}
        out[name] = {"frame_id": c.frame_id, "base_from_sensor": np.asarray(c.base_from_sensor, float).tolist(),
                     "intrinsics": intr}
    return out


def _calibration_from_plain(data: dict[str, Any]) -> dict[str, SensorCalibration]:
    out = {}
    for name, c in data.items():
        i = c.get("intrinsics")
        intr = None if i is None else PinholeIntrinsics(
            int(i["width_px"]), int(i["height_px"]), float(i["fx"]), float(i["fy"]), float(i["cx"]), float(i["cy"]))
        out[name] = SensorCalibration(name, c["frame_id"], np.asarray(c["base_from_sensor"], float), intr)
    return out


# ---------------------------------------------------------------------------------------- writer
class ShardWriter:
    """Writes ``SimFrame`` objects of one simulator run into a shard dataset (see module doc).

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

    def __enter__(self) -> "ShardWriter":
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
        n_s = len(SENSOR_NAMES)
        rec: dict[str, Any] = {
            "present": np.zeros(n_s, bool), "absence": np.full(n_s, NO_CAPTURE, np.int8),
            "stamp_s": np.full(n_s, np.nan), "receive_s": np.full(n_s, np.nan),
            "fault": np.array([FAULT_KINDS.index(frame.active_faults[s]) if s in frame.active_faults else -1
                               for s in SENSOR_NAMES], np.int8),
        }
        dropped_here = {d.sensor for d in frame.dropped}
        for sensor in ("rgb", "depth", "lidar", "radar"):
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
        assert set(arrays) == set(_SHARD_KEYS)
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
            "sensors": list(SENSOR_NAMES),
            "sensor_rates_hz": {s: float(sim.sensor_rate_hz(s)) for s in SENSOR_NAMES},
            "image_shapes": {"rgb": list(self._rgb_shape), "depth": list(self._depth_shape)},
            "calibration": _calibration_to_plain(sim.calibration),
            "class_names": list(CLASS_NAMES),
            "fields": {
                "gt_boxes": list(BOX_FIELDS), "lidar_points": list(LIDAR_FIELDS),
                "radar_points": list(RADAR_FIELDS), "imu": list(IMU_ROW_FIELDS),
            },
            "vocabularies": {
                "condition": list(CONDITIONS), "fault": list(FAULT_KINDS), "absence": list(ABSENCE_REASONS),
            },
            "shard_keys": list(_SHARD_KEYS),
            "shards": self._shards,
            "scenario": to_mapping(cfg),
        }


# ---------------------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class ShardFrame:
    """One frame read back from a shard dataset. Arrays are read-only views into the cached
    shard (copy before modifying). Absent modalities are None; ``absence`` says why."""

    index: int                          # position in the dataset
    frame_index: int                    # SimFrame.index
    time_s: float
    rgb: np.ndarray | None              # (H, W, 3) uint8
    depth: np.ndarray | None            # (h, w) float32 metres, NaN = invalid
    lidar: np.ndarray | None            # (N, 5) float32 lidar frame
    radar: np.ndarray | None            # (M, 5) float32 radar frame
    imu: np.ndarray | None              # (K, 7) float64 t, ax..gz over (time_s - window, time_s]
    imu_dropped: int                    # IMU captures lost to faults inside the window
    absence: dict[str, str]             # sensor -> "present" | "dropped_by_fault" | "no_capture"
    stamps: dict[str, float | None]     # sensor -> capture time of the payload (None if absent)
    receive_stamps: dict[str, float | None]
    active_faults: dict[str, str]       # sensor -> fault kind active at time_s
    gt_boxes: np.ndarray                # (B, 11) float32 base_link
    gt_track_ids: np.ndarray            # (B,) int32
    gt_lidar_hits: np.ndarray           # (B,) int32
    gt_visibility: np.ndarray           # (B,) float32 in [0, 1]
    ego_pose_xyyaw: np.ndarray          # (3,) float64
    ego_speed_mps: float
    ego_yaw_rate_radps: float
    condition: str
    severity: float

    def present(self, sensor: str) -> bool:
        return self.absence[sensor] == "present"

    @property
    def missing(self) -> dict[str, str]:
        """sensor -> reason, for the sensors whose payload is absent."""
        return {s: r for s, r in self.absence.items() if r != "present"}


class ShardDataset:
    """Random-access reader of a shard dataset; caches the most recently loaded shard."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        index_path = self.path / INDEX_FILE
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: no such shard dataset directory")
        if not index_path.is_file():
            partial = sorted(p.name for p in self.path.glob("shard_*.npz"))
            hint = (f" ({len(partial)} shard file(s) present: the writer did not finish)" if partial else "")
            raise ShardFormatError(f"{index_path}: missing index file{hint}")
        try:
            index = json.loads(index_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ShardFormatError(f"{index_path}: unreadable or corrupt index ({exc})") from exc
        if not isinstance(index, dict) or index.get("format") != FORMAT_NAME:
            raise ShardFormatError(f"{index_path}: not a {FORMAT_NAME} index")
        if index.get("version") != FORMAT_VERSION:
            raise ShardFormatError(
                f"{index_path}: format version {index.get('version')!r}, this reader handles {FORMAT_VERSION}")
        try:
            self.shards: list[dict[str, Any]] = list(index["shards"])
            self._starts = [int(s["first_frame"]) for s in self.shards]
            self._n = int(index["n_frames"])
            self.calibration: dict[str, SensorCalibration] = _calibration_from_plain(index["calibration"])
            self.sensors: tuple[str, ...] = tuple(index["sensors"])
            vocab = index["vocabularies"]
            self._conditions = tuple(vocab["condition"])
            self._faults = tuple(vocab["fault"])
            self._absence = tuple(vocab["absence"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ShardFormatError(f"{index_path}: malformed index ({exc!r})") from exc
        if sum(int(s["n_frames"]) for s in self.shards) != self._n:
            raise ShardFormatError(f"{index_path}: shard frame counts do not add up to n_frames={self._n}")
        self.index = index
        self.config_mapping: dict[str, Any] = index["scenario"]
        self.class_names: tuple[str, ...] = tuple(index["class_names"])
        self.sensor_rates_hz: dict[str, float] = dict(index["sensor_rates_hz"])
        self.frame_rate_hz: float = float(index["frame_rate_hz"])
        self.imu_window_s: float = float(index["imu_window_s"])
        self._cache_id: int | None = None
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self._n

    def __iter__(self):
        for i in range(self._n):
            yield self[i]

    def scenario_config(self):
        """The scenario as a ``sim.config.ScenarioConfig`` (strictly re-validated)."""
        from fusion_core.config_io import from_mapping
        from sim.config import ScenarioConfig

        return from_mapping(ScenarioConfig, self.config_mapping)

    def _load_shard(self, k: int) -> dict[str, np.ndarray]:
        if self._cache_id == k:
            return self._cache
        meta = self.shards[k]
        path = self.path / meta["file"]
        if not path.is_file():
            raise ShardFormatError(f"{path}: shard file listed in {INDEX_FILE} is missing")
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [key for key in _SHARD_KEYS if key not in npz.files]
                if missing:
                    raise ShardFormatError(f"{path}: shard lacks arrays {missing}")
                arrays = {key: npz[key] for key in _SHARD_KEYS}
        except ShardFormatError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to parse means a damaged file
            raise ShardFormatError(f"{path}: truncated or corrupt shard ({type(exc).__name__}: {exc})") from exc
        n = int(meta["n_frames"])
        bad = [key for key in ("time_s", "rgb", "depth", "present", "lidar_offsets") if
               len(arrays[key]) != (n + 1 if key.endswith("offsets") else n)]
        ragged = [("lidar_offsets", "lidar_points"), ("radar_offsets", "radar_points"), ("imu_offsets", "imu"),
                  ("gt_offsets", "gt_boxes"), ("gt_offsets", "gt_track_ids"), ("gt_offsets", "gt_lidar_hits"),
                  ("gt_offsets", "gt_visibility")]
        bad += [rows for off, rows in ragged if len(arrays[off]) != n + 1 or arrays[off][-1] != len(arrays[rows])]
        if bad:
            raise ShardFormatError(f"{path}: inconsistent with {INDEX_FILE} ({n} frames expected; bad arrays {bad})")
        for a in arrays.values():
            a.setflags(write=False)
        self._cache_id, self._cache = k, arrays
        return arrays

    def __getitem__(self, i: int) -> ShardFrame:
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"frame {i} out of range for a dataset of {self._n} frames")
        k = bisect.bisect_right(self._starts, i) - 1
        a = self._load_shard(k)
        j = i - self._starts[k]
        present = a["present"][j]

        def ragged(rows, off, col):
            return a[rows][a[off][j]:a[off][j + 1]] if present[col] else None

        absence = {s: self._absence[int(a["absence"][j, c])] for c, s in enumerate(self.sensors)}
        stamps = {s: (float(a["stamp_s"][j, c]) if present[c] else None) for c, s in enumerate(self.sensors)}
        recv = {s: (float(a["receive_s"][j, c]) if present[c] else None) for c, s in enumerate(self.sensors)}
        faults = {s: self._faults[int(a["fault"][j, c])] for c, s in enumerate(self.sensors) if a["fault"][j, c] >= 0}
        col = {s: c for c, s in enumerate(self.sensors)}
        g0, g1 = a["gt_offsets"][j], a["gt_offsets"][j + 1]
        return ShardFrame(
            index=i, frame_index=int(a["frame_index"][j]), time_s=float(a["time_s"][j]),
            rgb=a["rgb"][j] if present[col["rgb"]] else None,
            depth=a["depth"][j] if present[col["depth"]] else None,
            lidar=ragged("lidar_points", "lidar_offsets", col["lidar"]),
            radar=ragged("radar_points", "radar_offsets", col["radar"]),
            imu=ragged("imu", "imu_offsets", col["imu"]), imu_dropped=int(a["imu_dropped"][j]),
            absence=absence, stamps=stamps, receive_stamps=recv, active_faults=faults,
            gt_boxes=a["gt_boxes"][g0:g1], gt_track_ids=a["gt_track_ids"][g0:g1],
            gt_lidar_hits=a["gt_lidar_hits"][g0:g1], gt_visibility=a["gt_visibility"][g0:g1], ego_pose_xyyaw=a["ego_pose_xyyaw"][j],
            ego_speed_mps=float(a["ego_speed_mps"][j]), ego_yaw_rate_radps=float(a["ego_yaw_rate_radps"][j]),
            condition=self._conditions[int(a["condition"][j])], severity=float(a["severity"][j]),
        )
