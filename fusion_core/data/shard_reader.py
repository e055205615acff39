"""Reading a shard dataset (format: ``fusion_core.data.shard_format``, ``docs/shard_format.md``):
random access to its frames, each as a :class:`ShardFrame` with absent payloads as ``None``."""
from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion_core.data.sensor_calibration import SensorCalibration
from fusion_core.data.shard_format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    INDEX_FILE,
    SHARD_KEYS,
    ShardFormatError,
    calibration_from_plain,
)


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
            self.calibration: dict[str, SensorCalibration] = calibration_from_plain(index["calibration"])
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

    def _load_shard(self, k: int) -> dict[str, np.ndarray]:
        if self._cache_id == k:
            return self._cache
        meta = self.shards[k]
        path = self.path / meta["file"]
        if not path.is_file():
            raise ShardFormatError(f"{path}: shard file listed in {INDEX_FILE} is missing")
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [key for key in SHARD_KEYS if key not in npz.files]
                if missing:
                    raise ShardFormatError(f"{path}: shard lacks arrays {missing}")
                arrays = {key: npz[key] for key in SHARD_KEYS}
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
